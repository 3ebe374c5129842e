"""Calls kvgate over gRPC from Python's grpcio, through stubs that protoc
generates from proto/ (TestPythonClient in python_test.go generates them and
starts kvgate). KVGATE_ADDR is kvgate's host:port. The part between the
README markers is the README's Python example, word for word."""

import os
import unittest

import googlerpc_pb2

# README:begin python
import grpc

from fastly.kv.v1 import kv_pb2, kv_pb2_grpc

addr = os.environ.get("KVGATE_ADDR", "127.0.0.1:8080")
# kvgate serves gRPC over HTTP/2 without TLS on a plain listener.
channel = grpc.insecure_channel(addr)
kv = kv_pb2_grpc.KVStoreServiceStub(channel)


def example(store_id):
    kv.PutItem(kv_pb2.PutItemRequest(store_id=store_id, key="greeting", value=b"hello", metadata="m"))
    item = kv.GetItem(kv_pb2.GetItemRequest(store_id=store_id, key="greeting")).item
    print(item.value, item.metadata, item.generation)

    # A client-streamed upload: requests go out as the generator yields them.
    def batches():
        for i in range(3):
            yield kv_pb2.BatchPutItemsRequest(
                store_id=store_id, items=[kv_pb2.BatchItem(key=f"batch/{i}", value=f"value {i}".encode())])
    uploaded = kv.BatchPutItems(batches())
    print("written", uploaded.written, "failed", len(uploaded.failures))

    # A streamed listing: keys arrive page by page.
    keys = [k for page in kv.StreamKeys(kv_pb2.StreamKeysRequest(store_id=store_id, prefix="batch/", page_size=2))
            for k in page.keys]
    print(keys)

    try:
        kv.GetItem(kv_pb2.GetItemRequest(store_id=store_id, key="missing"))
    except grpc.RpcError as err:
        print(err.code(), err.details())  # StatusCode.NOT_FOUND ...
    return item, uploaded, keys
# README:end python


def bad_request_fields(err):
    """The fields named by the BadRequest details of a failed call's status,
    read from its grpc-status-details-bin trailer."""
    raw = dict(err.trailing_metadata() or ()).get("grpc-status-details-bin")
    if raw is None:
        return []
    status = googlerpc_pb2.Status.FromString(raw)
    fields = []
    for detail in status.details:
        bad = googlerpc_pb2.BadRequest()
        if detail.Unpack(bad):
            fields.extend(v.field for v in bad.field_violations)
    return fields


class KVGateTest(unittest.TestCase):
    def call_error(self, rpc, request):
        with self.assertRaises(grpc.RpcError) as ctx:
            rpc(request)
        return ctx.exception

    def test_example(self):
        item, uploaded, keys = example("py-example")
        self.assertEqual((item.value, item.metadata), (b"hello", "m"))
        self.assertGreater(item.generation, 0)
        self.assertEqual((uploaded.written, len(uploaded.failures)), (3, 0))
        self.assertEqual(keys, ["batch/0", "batch/1", "batch/2"])

    def test_unary(self):
        store = "py-unary"
        kv.PutItem(kv_pb2.PutItemRequest(store_id=store, key="k", value=b"v1"))
        gen = kv.GetItem(kv_pb2.GetItemRequest(store_id=store, key="k")).item.generation
        written = kv.PutItems(kv_pb2.PutItemsRequest(
            store_id=store, items=[kv_pb2.BatchItem(key=f"list/{i}", value=b"x") for i in range(3)]))
        self.assertEqual((written.written, len(written.failures)), (3, 0))
        listed = kv.ListKeys(kv_pb2.ListKeysRequest(store_id=store, prefix="list/"))
        self.assertEqual(list(listed.keys), ["list/0", "list/1", "list/2"])
        kv.DeleteItem(kv_pb2.DeleteItemRequest(store_id=store, key="k", if_generation_match=gen))
        err = self.call_error(kv.GetItem, kv_pb2.GetItemRequest(store_id=store, key="k"))
        self.assertEqual(err.code(), grpc.StatusCode.NOT_FOUND)

    def test_errors(self):
        store = "py-errors"
        kv.PutItem(kv_pb2.PutItemRequest(store_id=store, key="k", value=b"v"))
        gen = kv.GetItem(kv_pb2.GetItemRequest(store_id=store, key="k")).item.generation
        cases = [
            ("a stale generation", kv.PutItem,
             kv_pb2.PutItemRequest(store_id=store, key="k", value=b"w", if_generation_match=gen + 1),
             grpc.StatusCode.ABORTED, None),
            ("a missing key", kv.GetItem, kv_pb2.GetItemRequest(store_id=store, key="missing"),
             grpc.StatusCode.NOT_FOUND, None),
            ("an invalid key", kv.GetItem, kv_pb2.GetItemRequest(store_id=store, key="a/../b"),
             grpc.StatusCode.INVALID_ARGUMENT, "key"),
            ("no store", kv.ListKeys, kv_pb2.ListKeysRequest(),
             grpc.StatusCode.INVALID_ARGUMENT, "store_id"),
        ]
        for name, rpc, request, code, field in cases:
            with self.subTest(name):
                err = self.call_error(rpc, request)
                self.assertEqual(err.code(), code, err.details())
                if field is not None:
                    self.assertIn(field, bad_request_fields(err))


if __name__ == "__main__":
    unittest.main()
