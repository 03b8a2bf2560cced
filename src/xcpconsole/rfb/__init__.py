"""Sans-I/O RFB (VNC) protocol core: state machines, message codecs, encodings.

Nothing in this package does I/O; it is shared by the client library and the
simulated host.  We implement RFB by hand because no maintained Python library
offers a sans-I/O RFB core with the encoders and decoders we need.
"""
