"""``python -m requests_ppauth.testing``: run the emulator until interrupted.

Prints its URLs, CA bundle path and sample credentials (``--json``: one JSON line,
for scripts that start it in the background and read the first line).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from types import FrameType

from requests_ppauth.testing.emulator import Emulator


def main(argv: list[str] | None = None) -> int:
    """Start, print, wait for SIGINT/SIGTERM, stop."""
    parser = argparse.ArgumentParser(prog="python -m requests_ppauth.testing", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--token-lifetime", type=int, default=3600, metavar="SECONDS")
    parser.add_argument(
        "--identity-port",
        type=int,
        default=0,
        metavar="PORT",
        help="serve Entra ID on PORT (443: for clients that drop the authority's port)",
    )
    args = parser.parse_args(argv)
    done = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with Emulator(token_lifetime=args.token_lifetime, identity_port=args.identity_port) as emu:
        info = emu.info()
        if args.json:
            print(json.dumps(info), flush=True)
        else:
            sample = info.pop("sample") or {}
            for key, value in {**info, **sample}.items():
                print(f"{key:>18}  {value}")
            print("Ctrl-C to stop.", flush=True)
        done.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
