"""Entry point of the PyInstaller bundle (packaging/sketchstudio.spec): the same main as the
`sketchstudio` script, so the bundle takes the same flags (--self-test, --install-desktop, …)."""

import sys

from sketchstudio.gui.app import main

if __name__ == "__main__":
    sys.exit(main())
