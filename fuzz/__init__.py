"""Coverage-guided fuzzing of every parser the network feeds (``make fuzz``)."""
