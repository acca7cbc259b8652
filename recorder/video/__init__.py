"""Video and screen share as evidence: RTMS H.264 remuxed (never decoded) into encrypted
fragmented-MP4 segments on the RTMS clock (``track``, ``fmp4``, ``capture``), exported per track
and muxed with the listening audio (``export``)."""
