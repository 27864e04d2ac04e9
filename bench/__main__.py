"""``python -m bench [NAME] [OPTIONS]``: run one benchmark, or every one without a name.

    python -m bench                  # every benchmark with its defaults
    python -m bench store --help     # the store benchmark's options
    python -m bench http --help      # the HTTP stack benchmark's options
    python -m bench api --help       # the API server's write path (pod creates, patches)
    python -m bench read --help      # the read path at scale (lists, gets, watch fan-out, memory, relist storm)
    python -m bench apf --help       # what APF and metrics cost: GET throughput, both on vs both off
    python -m bench protobuf         # the protobuf codec's per-object cost vs orjson (2.3 KB pod)
    python -m bench exhaust --help   # abusive connections: a 64 MB header, watches that never read
    python -m bench client-http      # aiohttp vs httpx for the client: small GETs, a big LIST
    python -m bench informer --help  # informer initial sync: time and RSS, with and without the transform
    python -m bench scheduler --help # the scheduler: 5,000 nodes, 30,000 pending pods, bound/s end to end
    python -m bench hollow --help    # hollow nodes: 5,000 per process, CPU, RSS, Lease lag, pods started/s
    python -m bench controllers --help  # a Deployment of 3,000 replicas on 100 hollow nodes: time to Available
"""

from __future__ import annotations

import sys
from typing import Callable


def _store(argv: list[str]) -> int:
    from .store_bench import main

    return main(argv)


def _http(argv: list[str]) -> int:
    from .http_stacks import main

    return main(argv)


def _api(argv: list[str]) -> int:
    from .api_bench import main

    return main(argv)


def _read(argv: list[str]) -> int:
    from .read_bench import main

    return main(argv)


def _apf(argv: list[str]) -> int:
    from .apf_bench import main

    return main(argv)


def _protobuf(argv: list[str]) -> int:
    from .protobuf_codec import main

    return main(argv)


def _exhaust(argv: list[str]) -> int:
    from .exhaust_bench import main

    return main(argv)


def _controllers(argv: list[str]) -> int:
    from .controllers_bench import main

    return main(argv)


def _client_http(argv: list[str]) -> int:
    from .client_http_bench import main

    return main(argv)


def _informer(argv: list[str]) -> int:
    from .informer_bench import main

    return main(argv)


def _scheduler(argv: list[str]) -> int:
    from .scheduler_bench import main

    return main(argv)


def _hollow(argv: list[str]) -> int:
    from .hollow_bench import main

    return main(argv)


BENCHMARKS: dict[str, Callable[[list[str]], int]] = {"store": _store, "http": _http, "api": _api, "read": _read,
                                                     "apf": _apf, "protobuf": _protobuf, "exhaust": _exhaust,
                                                     "client-http": _client_http, "informer": _informer,
                                                     "scheduler": _scheduler, "hollow": _hollow,
                                                     "controllers": _controllers}


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip() + "\n\nbenchmarks: " + ", ".join(BENCHMARKS))
        return 0
    if argv and not argv[0].startswith("-"):
        name, rest = argv[0], argv[1:]
        if name not in BENCHMARKS:
            print(f"unknown benchmark {name!r}; choose among {', '.join(BENCHMARKS)}", file=sys.stderr)
            return 2
        return BENCHMARKS[name](rest)
    status = 0
    for name, run in BENCHMARKS.items():  # options without a name go to every benchmark
        status |= run(argv)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
