"""konnect-emulator: a local stand-in for Konnect's audit-log API and webhook delivery.

Used by the test suite, the demo and anyone trying kongctl offline; the product never imports it.
"""
