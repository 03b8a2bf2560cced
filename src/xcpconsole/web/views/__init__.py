"""The gateway's request handlers, one module per concern: ``login`` (sign-in, sign-out,
one-time links), ``vms`` (VM list, ``/api/vms``, thumbnails), ``consoles`` (console
pages, one-time tokens, the console WebSocket).  ``common`` holds what they share."""
