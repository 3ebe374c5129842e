// The script of the page the browser test serves from another origin than
// kvgate's. With the generated client (gen/ts) and Connect-Web, it calls
// every RPC a browser can call over the Connect protocol (JSON and binary)
// and over gRPC-Web, reads the code and details of two errors, and
// publishes what it saw as window.kvgateResults for the test's driver.
//
// Query parameters: kvgate (kvgate's base URL), store (a store id prefix)
// and mode: "calls" makes every call; "refused" tries one read and one
// write, which kvgate's CORS allowlist should stop in the browser.

import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";

import { KVStoreService } from "../../gen/ts/fastly/kv/v1/kv_pb.ts";

type Result = Record<string, unknown>;

const params = new URLSearchParams(location.search);
const baseUrl = params.get("kvgate") ?? "";
const storePrefix = params.get("store") ?? "browser";
const mode = params.get("mode") ?? "calls";

const transports: Record<string, Transport> = {
  "connect-json": createConnectTransport({ baseUrl }),
  "connect-proto": createConnectTransport({ baseUrl, useBinaryFormat: true }),
  "grpc-web": createGrpcWebTransport({ baseUrl, useBinaryFormat: true }),
};

const enc = new TextEncoder();
const dec = new TextDecoder();
// Every call carries a deadline (Connect-Timeout-Ms or Grpc-Timeout), and
// one carries Authorization and X-Request-Id: all need the preflight.
const opts = { timeoutMs: 10_000 };

// callEveryShape makes every call a browser can make on one transport.
async function callEveryShape(transport: Transport, storeId: string): Promise<Result> {
  const client = createClient(KVStoreService, transport);
  const out: Result = {};
  await client.putItem({ storeId, key: "greeting", value: enc.encode("hello"), metadata: "m" }, opts);
  const got = await client.getItem({ storeId, key: "greeting" }, opts);
  out.get = {
    value: dec.decode(got.item?.value),
    metadata: got.item?.metadata,
    hasGeneration: (got.item?.generation ?? 0n) > 0n,
  };
  const put = await client.putItems(
    { storeId, items: ["a", "b", "c"].map((key) => ({ key, value: enc.encode(key) })) },
    opts,
  );
  out.putItems = { written: Number(put.written), failures: put.failures.length };
  const list = await client.listKeys(
    { storeId },
    { ...opts, headers: { Authorization: "Bearer browser-test", "X-Request-Id": "browser-test" } },
  );
  out.listKeys = list.keys;
  const streamed: string[] = [];
  for await (const page of client.streamKeys({ storeId, pageSize: 2 }, opts)) {
    streamed.push(...page.keys);
  }
  out.streamKeys = streamed;
  await client.deleteItem({ storeId, key: "greeting" }, opts);
  out.getDeleted = await errorOf(client.getItem({ storeId, key: "greeting" }, opts));
  out.getInvalid = await errorOf(client.getItem({ storeId, key: "a/../b" }, opts));
  // Browsers cannot stream requests (fetch has no streaming request body
  // that Connect-Web uses), so client streaming fails in the browser.
  out.batchPutItems = await errorOf(
    (async () => {
      const items = (async function* () {
        yield { storeId, items: [{ key: "x", value: enc.encode("x") }] };
      })();
      await client.batchPutItems(items, opts);
    })(),
  );
  return out;
}

// tryRefused makes one read and one write that CORS should stop.
async function tryRefused(transport: Transport, storeId: string): Promise<Result> {
  const client = createClient(KVStoreService, transport);
  return {
    get: await errorOf(client.getItem({ storeId, key: "greeting" }, opts)),
    put: await errorOf(client.putItem({ storeId, key: "refused", value: enc.encode("x") }, opts)),
  };
}

// errorOf waits for p and describes the error it fails with: its code,
// message and the google.rpc details it carries.
async function errorOf(p: Promise<unknown>): Promise<Result> {
  try {
    await p;
    return { code: "ok" };
  } catch (err) {
    const ce = ConnectError.from(err);
    const out: Result = { code: codeToString(ce.code), message: ce.rawMessage };
    for (const d of ce.details) {
      if (!("type" in d)) {
        continue; // a detail this page built itself; none here
      }
      if (d.type === "google.rpc.ErrorInfo") {
        out.errorInfo = decodeErrorInfo(d.value);
      } else if (d.type === "google.rpc.BadRequest") {
        out.badRequestFields = decodeBadRequestFields(d.value);
      }
    }
    if (ce.code === Code.Unknown && ce.cause instanceof Error) {
      out.cause = ce.cause.message;
    }
    return out;
  }
}

// decodeErrorInfo reads google.rpc.ErrorInfo (reason = 1, domain = 2,
// metadata = 3) from the wire, so the page needs no generated code for
// Google's error details.
function decodeErrorInfo(bytes: Uint8Array): Result {
  const r = new BinaryReader(bytes);
  const info: Result = { metadata: {} };
  while (r.pos < r.len) {
    const [field, wireType] = r.tag();
    if (field === 1) info.reason = r.string();
    else if (field === 2) info.domain = r.string();
    else if (field === 3) {
      const entry = readStrings(r.bytes());
      (info.metadata as Record<string, string>)[entry[1] ?? ""] = entry[2] ?? "";
    } else r.skip(wireType);
  }
  return info;
}

// decodeBadRequestFields returns the field of each google.rpc.BadRequest
// violation (field_violations = 1, each with field = 1).
function decodeBadRequestFields(bytes: Uint8Array): string[] {
  const r = new BinaryReader(bytes);
  const fields: string[] = [];
  while (r.pos < r.len) {
    const [field, wireType] = r.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) fields.push(readStrings(r.bytes())[1] ?? "");
    else r.skip(wireType);
  }
  return fields;
}

// readStrings reads the string fields of a message by field number.
function readStrings(bytes: Uint8Array): Record<number, string> {
  const r = new BinaryReader(bytes);
  const out: Record<number, string> = {};
  while (r.pos < r.len) {
    const [field, wireType] = r.tag();
    if (wireType === WireType.LengthDelimited) out[field] = r.string();
    else r.skip(wireType);
  }
  return out;
}

async function main(): Promise<Result> {
  const results: Result = { origin: location.origin, mode };
  for (const [name, transport] of Object.entries(transports)) {
    const storeId = `${storePrefix}-${name}`;
    try {
      results[name] = mode === "refused" ? await tryRefused(transport, storeId) : await callEveryShape(transport, storeId);
    } catch (err) {
      results[name] = { failed: await errorOf(Promise.reject(err)) };
    }
  }
  return results;
}

declare global {
  interface Window {
    kvgateResults?: Result;
  }
}

main().then(
  (results) => {
    window.kvgateResults = results;
  },
  (err: unknown) => {
    window.kvgateResults = { failed: String(err) };
  },
);
