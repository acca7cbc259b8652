"""The signed export bundle: whole-call WAVs, a listening file, readable transcripts, a manifest.

``export`` writes a bundle (trio shell), ``verify`` re-checks one offline with only the public
key; the other modules are pure pieces both use (track plans, mixing, transcripts, signing).
"""
