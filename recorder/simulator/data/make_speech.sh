#!/usr/bin/env bash
# Regenerates the real-speech fixtures the simulator streams (and tests compare against).
# Needs Debian's espeak-ng and sox. Output: 16 kHz, mono, signed 16-bit WAV, about 6 s each,
# with -50 dB pink noise so that "silence" is never digitally zero (as on a real line).
set -euo pipefail
cd "$(dirname "$0")"
say() { # voice, file, text
  espeak-ng -v "$1" -s 165 -w "/tmp/$2.raw.wav" "$3"
  sox -q "/tmp/$2.raw.wav" -r 16000 -c 1 -b 16 "/tmp/$2.clean.wav" norm -3
  sox -q "/tmp/$2.clean.wav" -p synth pinknoise vol -50dB | sox -q -m "/tmp/$2.clean.wav" - -b 16 "$2.wav"
  rm -f "/tmp/$2.raw.wav" "/tmp/$2.clean.wav"
}
say en-us+m3 speech_a "Thank you for calling the trading desk. This call is recorded for compliance. How can I help you today?"
say en-gb+f2 speech_b "I would like to sell two hundred shares of the index fund at the market price, please."
say en-us+m7 speech_c "Confirming the order: two hundred shares, sold at market. Is there anything else I can do for you?"
