// Calls kvgate from Node through @connectrpc/connect-node and the
// @kvgate/client package, over HTTP/2 with the Connect protocol and with
// gRPC. KVGATE_URL is kvgate's base URL (TestNodeClient in node_test.go starts it). The part
// between the README markers is the README's Node example, word for word.
import assert from "node:assert/strict";
import { test } from "node:test";

// README:begin node
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { KVStoreService } from "@kvgate/client";

const baseUrl = process.env.KVGATE_URL ?? "http://127.0.0.1:8080";
// HTTP/2 without TLS (h2c), as kvgate serves it on a plain listener.
const connect = createClient(KVStoreService, createConnectTransport({ baseUrl, httpVersion: "2" }));
const grpc = createClient(KVStoreService, createGrpcTransport({ baseUrl }));

async function example(client, storeId) {
  const enc = new TextEncoder();
  await client.putItem({ storeId, key: "greeting", value: enc.encode("hello"), metadata: "m" });
  const { item } = await client.getItem({ storeId, key: "greeting" });
  console.log(new TextDecoder().decode(item.value), item.metadata, item.generation);

  // A client-streamed upload: items go out as they are produced.
  async function* batches() {
    for (let i = 0; i < 3; i++) {
      yield { storeId, items: [{ key: `batch/${i}`, value: enc.encode(`value ${i}`) }] };
    }
  }
  const { written, failures } = await client.batchPutItems(batches());
  console.log(`written ${written}, failed ${failures.length}`);

  // A streamed listing: keys arrive page by page.
  const keys = [];
  for await (const page of client.streamKeys({ storeId, prefix: "batch/", pageSize: 2 })) {
    keys.push(...page.keys);
  }
  console.log(keys);
  return { item, written, failures, keys };
}
// README:end node

for (const [name, client] of [["connect", connect], ["grpc", grpc]]) {
  test(`put, get, upload and listing over ${name}`, async () => {
    const { item, written, failures, keys } = await example(client, `node-${name}`);
    assert.equal(new TextDecoder().decode(item.value), "hello");
    assert.equal(item.metadata, "m");
    assert.ok(item.generation > 0n, "the item has a generation");
    assert.equal(written, 3n);
    assert.deepEqual(failures, []);
    assert.deepEqual(keys, ["batch/0", "batch/1", "batch/2"]);
  });
}
