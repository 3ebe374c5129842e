// A small kvgate client in TypeScript, built on the service descriptor that
// protoc-gen-es generates (gen/ts/fastly/kv/v1/kv_pb.ts) and the Connect-Web
// transport, which runs in browsers and, through the global fetch, in Node
// 20 and later. It writes one item, reads it back, lists the keys that share
// its prefix and shows how an RPC error carries a Connect code.
//
// Start kvgate, then, from the repository root, bundle and run it:
//
//   node_modules/.bin/esbuild examples/ts/main.ts --bundle --platform=node \
//     --format=esm --target=node20 --outfile=dist/example.mjs
//   node dist/example.mjs http://127.0.0.1:8080
//
// The base URL comes from KVGATE_URL, else the first argument, else
// http://127.0.0.1:8080; the store id from KVGATE_STORE, else "demo".

import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { createConnectTransport } from "@connectrpc/connect-web";

import {
  KVStoreService,
  PutItemRequestSchema,
  PutMode,
} from "../../gen/ts/fastly/kv/v1/kv_pb.ts";

// Node's process object, typed here so the example needs no @types/node. (In
// a project with @types/node, plain `process` works the same way.)
const proc = (
  globalThis as {
    process?: {
      env: Record<string, string | undefined>;
      argv: string[];
      exitCode?: number | string;
    };
  }
).process;

const baseUrl = proc?.env["KVGATE_URL"] || proc?.argv[2] || "http://127.0.0.1:8080";
const storeId = proc?.env["KVGATE_STORE"] || "demo";

// One transport and client serve every call. useBinaryFormat sends binary
// Protobuf; the default is JSON, which base64-encodes the bytes fields.
const transport = createConnectTransport({ baseUrl, useBinaryFormat: true });
const client = createClient(KVStoreService, transport);

// Each call gets a deadline; kvgate sees it as the Connect-Timeout-Ms header.
const callOptions = { timeoutMs: 10_000 };

async function main(): Promise<void> {
  // A request can be built with create() from its schema, which fills in
  // every default; the value is bytes, so encode the string first. Metadata
  // is an opaque string of up to 2000 bytes stored beside the value.
  const put = create(PutItemRequestSchema, {
    storeId,
    key: "greeting",
    value: new TextEncoder().encode("hello"),
    metadata: JSON.stringify({ lang: "en" }),
    mode: PutMode.UNSPECIFIED, // overwrite; ADD, APPEND and PREPEND also exist
  });
  await client.putItem(put, callOptions);

  // Or pass a plain init object: the client calls create() for you. The
  // generation is a uint64, so it arrives as a bigint.
  const { item } = await client.getItem({ storeId, key: "greeting" }, callOptions);
  if (item === undefined) {
    throw new Error("GetItem returned no item");
  }
  console.log(`key: ${item.key}`);
  console.log(`value: ${new TextDecoder().decode(item.value)}`);
  console.log(`metadata: ${item.metadata}`);
  console.log(`generation: ${item.generation}`);

  // ListKeys returns one page of keys in byte order; pass nextCursor back as
  // cursor while it is non-empty to read the rest.
  const keys: string[] = [];
  let cursor = "";
  do {
    const page = await client.listKeys({ storeId, prefix: "gre", cursor }, callOptions);
    keys.push(...page.keys);
    cursor = page.nextCursor;
  } while (cursor !== "");
  console.log(`keys: ${keys.join(", ")}`);

  // A missing item is an error with Code.NotFound, not an empty response.
  // ConnectError.from turns whatever was thrown into a ConnectError; branch
  // on its code rather than on the message text.
  try {
    await client.getItem({ storeId, key: "no-such-key" }, callOptions);
    console.log("missing: found");
  } catch (err) {
    const ce = ConnectError.from(err);
    if (ce.code !== Code.NotFound) {
      throw ce;
    }
    console.log(`missing: ${codeToString(ce.code)}`); // "not_found"
  }
}

main().catch((err: unknown) => {
  // codeToString gives the protocol's token ("unavailable"), the same text
  // the Go client prints; rawMessage is the server's message without the
  // "[code]" prefix that ConnectError.message adds.
  const ce = ConnectError.from(err);
  // A request that never reached kvgate (a refused connection, say) is
  // Code.Unknown with fetch's terse "fetch failed"; the innermost cause says
  // why.
  let root: unknown = ce;
  while (root instanceof Error && root.cause !== undefined) {
    root = root.cause;
  }
  const why = root instanceof Error && root !== ce ? ` (${root.message})` : "";
  console.error(`error: code=${codeToString(ce.code)}: ${ce.rawMessage}${why}`);
  if (proc !== undefined) {
    proc.exitCode = 1;
  }
});
