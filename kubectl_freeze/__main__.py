"""``python -m kubectl_freeze [unfreeze] ...``: the plugin without its console scripts."""

import sys

from .cli import freeze_app, run, unfreeze_app

if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["unfreeze"]:
        sys.exit(run(unfreeze_app, "kubectl unfreeze", args[1:]))
    sys.exit(run(freeze_app, "kubectl freeze", args))
