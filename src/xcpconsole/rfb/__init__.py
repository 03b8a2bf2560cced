"""Sans-I/O RFB (VNC) protocol core: state machines, message codecs, encodings.

Nothing in this package does I/O; it is shared by the client library, the
simulated host and the web gateway's relay (:mod:`.framer`).  Every protocol
number is named in :mod:`.constants`; the handshake's messages are read by one
set of functions (:mod:`.handshake`) and later messages by another
(:mod:`.messages`), whichever machine reads them.  We implement RFB by hand
because no maintained Python library offers a sans-I/O RFB core with the
encoders and decoders we need.
"""
