"""Checks a screenshot of the desktop viewer: the top-1 probability bar is drawn, as long as the probability
the engine reports says, with a track behind it.

    python scripts/check_viewer_screenshot.py SCREENSHOT.png PROBABILITY

The viewer paints each class as a track (grey 235) with a bar (RGB 90, 140, 220) across `probability` of its
width, and the label in black over the bar's middle rows. The longest run of bar colour in any row is the top-1
bar above its label; the track continues it on the same row.
"""

from __future__ import annotations

import sys

from PIL import Image

BAR = (90, 140, 220)
TRACK = (235, 235, 235)


def run_length(row: list[tuple[int, int, int]], start: int, colour: tuple[int, int, int]) -> int:
    end = start
    while end < len(row) and row[end] == colour:
        end += 1
    return end - start


def main() -> None:
    path, expected = sys.argv[1], float(sys.argv[2])
    image = Image.open(path).convert("RGB")
    width, height = image.size
    pixels = image.load()
    best = (0, 0, 0)  # (bar length, row, first column)
    bar_rows = 0
    for y in range(height):
        row = [pixels[x, y] for x in range(width)]
        x = 0
        row_has_bar = False
        while x < width:
            if row[x] == BAR:
                length = run_length(row, x, BAR)
                row_has_bar = row_has_bar or length >= 3
                if length > best[0]:
                    best = (length, y, x)
                x += length
            else:
                x += 1
        bar_rows += row_has_bar
    length, y, x = best
    if length < 20:
        sys.exit(f"{path}: no probability bar (longest run of bar colour {length} px)")
    row = [pixels[i, y] for i in range(width)]
    # The bar's rounded corners and the track's blend for a few pixels where they meet.
    end = x + length
    gap = 0
    while end + gap < width and row[end + gap] != TRACK and gap < 6:
        gap += 1
    track = run_length(row, end + gap, TRACK)
    drawn = (length + gap / 2) / (length + gap + track)
    print(
        f"{path}: top bar {length} px of a {length + gap + track} px track on row {y} "
        f"({drawn:.3f}; the engine says {expected:.3f}); {bar_rows} rows hold bar colour"
    )
    if abs(drawn - expected) > 0.03:
        sys.exit(f"{path}: the top bar shows {drawn:.3f}, the engine says {expected:.3f}")
    if bar_rows < 12:
        sys.exit(f"{path}: only {bar_rows} rows of bars")


if __name__ == "__main__":
    main()
