"""A gRPC server that does no work: the ceiling of Python's grpc.aio on this machine.

    python -m bench.grpc_echo PORT

Serves ``etcdserverpb.KV/Put`` with a constant response and ``Maintenance/Status``
(so that ``EtcdStore`` can start against it), with ``grpc.aio`` as
``kubeplane store serve`` does.  The benchmark puts the same load on it as on the real
endpoint: the difference between the two is what the store and the servicers cost, and
this server's throughput bounds what any grpc.aio endpoint can reach.
"""

from __future__ import annotations

import asyncio
import sys

import grpc
from etcd3aio._protobuf import rpc_pb2, rpc_pb2_grpc

HEADER = rpc_pb2.ResponseHeader(cluster_id=1, member_id=1, revision=1, raft_term=1)


class KV(rpc_pb2_grpc.KVServicer):
    async def Put(self, request: rpc_pb2.PutRequest, context) -> rpc_pb2.PutResponse:
        return rpc_pb2.PutResponse(header=HEADER)


class Maintenance(rpc_pb2_grpc.MaintenanceServicer):
    async def Status(self, request: rpc_pb2.StatusRequest, context) -> rpc_pb2.StatusResponse:
        return rpc_pb2.StatusResponse(header=HEADER, version="3.5.17", leader=1)


async def serve(port: int) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    if not server.add_insecure_port(f"127.0.0.1:{port}"):
        raise SystemExit(f"cannot listen on 127.0.0.1:{port}")
    rpc_pb2_grpc.add_KVServicer_to_server(KV(), server)
    rpc_pb2_grpc.add_MaintenanceServicer_to_server(Maintenance(), server)
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
