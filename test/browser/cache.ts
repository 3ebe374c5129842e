// The script of the page the HTTP cache browser test serves from another
// origin than kvgate's. With Connect-Web's Connect transport set to send
// GetItem as a GET (useHttpGet), it reads one item four times: twice, then
// (after the test changed the item on the store) twice more. Connect-Web
// calls fetch with its default cache mode, so the browser keeps each
// answer (Cache-Control: no-cache, with an ETag) and revalidates it with
// If-None-Match before every reuse; the page sees whole items either way
// (it reports each value's size and SHA-256).
// After each step it tells its own origin (POST /step), where the test
// counts the requests that reached the store and makes the change. It
// publishes what it saw as window.kvgateResults for the test's driver.
//
// Query parameters: kvgate (kvgate's base URL), store (a store id
// prefix), key, and token: when set, every call carries it as a bearer
// token.

import { ConnectError, createClient, type CallOptions, type Transport } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { createConnectTransport } from "@connectrpc/connect-web";

import { KVStoreService } from "../../gen/ts/fastly/kv/v1/kv_pb.ts";

type Result = Record<string, unknown>;

const params = new URLSearchParams(location.search);
const baseUrl = params.get("kvgate") ?? "";
const storePrefix = params.get("store") ?? "cache";
const key = params.get("key") ?? "doc";
const token = params.get("token");
const headers: Record<string, string> = token ? { Authorization: `Bearer ${token}` } : {};

// Each transport with the options of its calls. A GET with no deadline
// carries no header of Connect's own (Connect-Web drops Content-Type and
// Connect-Protocol-Version from GETs), so it is a simple cross-origin
// request; a deadline adds Connect-Timeout-Ms, and with it a preflight
// (as does a token).
const readers: Record<string, { transport: Transport; opts: CallOptions }> = {
  "connect-json-get": { transport: createConnectTransport({ baseUrl, useHttpGet: true }), opts: { headers } },
  "connect-proto-get-deadline": {
    transport: createConnectTransport({ baseUrl, useHttpGet: true, useBinaryFormat: true }),
    opts: { headers, timeoutMs: 10_000 },
  },
};

// step tells the page's own origin that a step of one reader is done.
async function step(reader: string, name: string): Promise<void> {
  const res = await fetch("/step?" + new URLSearchParams({ reader, step: name }), { method: "POST" });
  const body = await res.text();
  if (!res.ok) {
    throw new Error(`step ${name}: ${res.status} ${body}`);
  }
}

// readFourTimes reads the item twice, has the test change it, and reads
// it twice more, reporting each step.
async function readFourTimes(reader: string, transport: Transport, opts: CallOptions): Promise<Result> {
  const client = createClient(KVStoreService, transport);
  const storeId = `${storePrefix}-${reader}`;
  const reads: Result[] = [];
  const read = async () => {
    let etag: string | null = null;
    const got = await client.getItem(
      { storeId, key },
      { ...opts, onHeader: (h: Headers) => (etag = h.get("ETag")) },
    );
    const value = got.item?.value ?? new Uint8Array();
    reads.push({
      size: value.length,
      sha256: await sha256(value),
      generation: String(got.item?.generation ?? 0n),
      notModified: got.notModified,
      etag,
    });
    await step(reader, "read");
  };
  await step(reader, "start");
  await read();
  await read();
  await step(reader, "change");
  await read();
  await read();
  return { reads };
}

// sha256 is the hex SHA-256 of b, so the test can compare values without
// carrying them back.
async function sha256(b: Uint8Array): Promise<string> {
  // digest takes views of an ArrayBuffer only; the copy is one.
  const sum = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(b)));
  return Array.from(sum, (x) => x.toString(16).padStart(2, "0")).join("");
}

async function main(): Promise<Result> {
  const results: Result = { origin: location.origin };
  for (const [name, { transport, opts }] of Object.entries(readers)) {
    try {
      results[name] = await readFourTimes(name, transport, opts);
    } catch (err) {
      const ce = ConnectError.from(err);
      results[name] = { failed: { code: codeToString(ce.code), message: ce.rawMessage } };
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
