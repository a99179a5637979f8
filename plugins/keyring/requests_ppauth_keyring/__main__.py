"""``python -m requests_ppauth_keyring``: see :mod:`requests_ppauth_keyring._cli`."""

from requests_ppauth_keyring._cli import main

raise SystemExit(main())
