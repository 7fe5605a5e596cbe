#!/bin/sh
# Writes prompts/hold-music.wav, the music callers hear while they wait in a queue (spoken prompts come from
# `knappval prompts synth --text prompts/text.yaml`; music is not text, so it has this script).
#
# A calm four-note melody (C5 E5 G5 E5, sine tones with soft fades) over a low A3 drone, 8 s long and exactly 400
# frames of 20 ms, so that the loop wraps on a frame boundary with no gap. Its notes are the signature the tests
# listen for: 523, 659 and 784 Hz. The same run gives byte-identical output (no dither).
#
# Usage: prompts/hold-music.sh    Needs: sox.
set -eu
cd "$(dirname "$0")"
command -v sox >/dev/null || { echo "hold-music.sh: sox is not installed (apt-get install sox)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for note in 523.25 659.25 783.99 659.25; do
    sox -D -n -r 8000 -c 1 -b 16 -e signed-integer "$tmp/note-$note.wav" \
        synth 2 sine "$note" fade h 0.15 2 0.35 vol 0.5
done
sox -D "$tmp/note-523.25.wav" "$tmp/note-659.25.wav" "$tmp/note-783.99.wav" "$tmp/note-659.25.wav" \
    "$tmp/melody.wav"
sox -D -n -r 8000 -c 1 -b 16 -e signed-integer "$tmp/drone.wav" synth 8 sine 220 vol 0.12
sox -D -m "$tmp/melody.wav" "$tmp/drone.wav" -r 8000 -c 1 -b 16 -e signed-integer hold-music.wav \
    gain -n -6 trim 0 8
echo "hold-music.wav: $(wc -c < hold-music.wav) bytes"
