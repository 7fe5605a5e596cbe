#!/bin/sh
# Writes the shipped Swedish prompts: espeak-ng speaks each text, sox turns it into what the media path plays
# without conversion (8 kHz, mono, 16-bit PCM WAV, peak at -3 dBFS, a short pause at the end).
#
# Idempotent: the same text gives byte-identical files (no dither, no timestamps), so re-running it shows no diff.
# Replace any file with a recording of a real voice at any time; `knappval check` verifies it is usable.
#
# Usage: prompts/generate.sh            (from the repository root or from prompts/)
# Needs: espeak-ng (Swedish voice "sv"), sox.
set -eu

cd "$(dirname "$0")"
command -v espeak-ng >/dev/null || { echo "generate.sh: espeak-ng is not installed" >&2; exit 1; }
command -v sox >/dev/null || { echo "generate.sh: sox is not installed" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# espeak-ng reads "IT" as a word and "Raindance" the Swedish way; spell them as they are said.
say() {
    id=$1
    text=$2
    espeak-ng -v sv -s 175 -p 45 -w "$tmp/$id.wav" "$text"
    sox -D "$tmp/$id.wav" -r 8000 -c 1 -b 16 -e signed-integer "$id.wav" gain -n -3 pad 0 0.3
    echo "$id.wav: $(wc -c < "$id.wav") bytes"
}

say welcome "Välkommen till kommunens servicecenter."
say main-menu "Tryck 1 för Kundtjänst, 2 för Personal Direkt, 3 för I T Kundservice, \
4 för Rejndans-support, 5 för Upphandling, och 6 för Treserva och Procapita. Stjärna upprepar valen."
say care-menu "Verksamhetssystem för vård och omsorg. Tryck 1 för Treserva, 2 för Procapita. \
Stjärna upprepar valen, fyrkant går tillbaka till huvudmenyn."
say invalid-choice "Det valet finns inte."
say function-busy "Just nu kan ingen svara. Du kopplas i stället till Kundtjänst."
say goodbye "Tyvärr kan ingen ta ditt samtal just nu. Välkommen att ringa igen senare. Hej då."
say transfer-kundtjanst "Du kopplas nu till Kundtjänst."
say transfer-personal "Du kopplas nu till Personal Direkt."
say transfer-it "Du kopplas nu till I T Kundservice."
say transfer-raindance "Du kopplas nu till Rejndans-support."
say transfer-upphandling "Du kopplas nu till Upphandling."
say transfer-treserva "Du kopplas nu till Treserva-support."
say transfer-procapita "Du kopplas nu till Procapita-support."

# Queues: the place in line is said as "Du är nummer" + the number + "i kön".
say queue-position "Du är nummer"
say queue-in-line "i kön."
say queue-position-many "Det är fler än tjugo före dig i kön. Du behåller din plats."
n=1
for word in ett två tre fyra fem sex sju åtta nio tio elva tolv tretton fjorton femton sexton sjutton arton \
    nitton tjugo; do
    say "number-$n" "$word"
    n=$((n + 1))
done

# Hold music: a calm four-note melody (C5 E5 G5 E5, sine tones with soft fades) over a low A3 drone, 8 s long
# and exactly 400 frames of 20 ms, so that the loop wraps on a frame boundary with no gap. Its notes are the
# signature the tests listen for: 523, 659 and 784 Hz.
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
