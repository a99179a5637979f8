"""``python -m requests_ppauth.cli``: the ``ppauth`` command."""

import sys

from requests_ppauth.cli import main

if __name__ == "__main__":
    sys.exit(main())
