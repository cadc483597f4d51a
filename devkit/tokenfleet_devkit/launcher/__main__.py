"""`python -m tokenfleet_devkit.launcher`: run the local cluster's selected pods as processes."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from tokenfleet_devkit.cluster.topology import LOCAL_PROCESS_LABEL
from tokenfleet_devkit.launcher.runner import Launcher


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tokenfleet-launcher",
        description="Run the pods matching a label selector as local processes bound to their pod IPs.",
    )
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--selector", default=LOCAL_PROCESS_LABEL, help="label selector of the pods to run")
    parser.add_argument("--log-dir", type=Path, required=True, help="one log file per pod goes here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    launcher = Launcher(args.kubeconfig, args.selector, args.log_dir)

    def stop(signum: int, frame: FrameType | None) -> None:
        launcher.shutdown()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=launcher.supervise_forever, name="supervise", daemon=True).start()
    launcher.watch_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
