"""``python -m kongctl.emulator``: the konnect-emulator command."""

from kongctl.emulator.cli import main

main()
