"""What a terminal shows after a recorded pty session: enough of a VT100 for rich's live display.

rich redraws in place with carriage returns, cursor-up (ESC [ n A) and erase-line (ESC [ 2 K); its
colours and the cursor's visibility (other CSI sequences) change no text. `screen` replays a
recording (decoded from the pty's bytes without newline translation: rich's carriage returns
matter) and returns the lines left on the screen (scrollback included), so a test can say what a
user sees once a command has ended, e.g. that no live table was left behind.
"""

from __future__ import annotations

import re

_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")


def screen(recording: str) -> list[str]:
    lines, row, col, pos = [""], 0, 0, 0
    while pos < len(recording):
        match = _CSI.match(recording, pos)
        if match:
            arguments, command = match.groups()
            if command == "A":  # cursor up
                row = max(0, row - int(arguments or 1))
            elif command == "K":  # erase in line (rich erases whole lines: 2)
                lines[row] = "" if arguments == "2" else lines[row][:col]
            pos = match.end()
            continue
        char = recording[pos]
        pos += 1
        if char == "\r":
            col = 0
        elif char == "\n":  # the pty's output processing (onlcr) makes every newline a carriage return too
            row, col = row + 1, 0
            if row == len(lines):
                lines.append("")
        elif char >= " ":
            line = lines[row].ljust(col)
            lines[row] = line[:col] + char + line[col + 1:]
            col += 1
    return [line.rstrip() for line in lines]
