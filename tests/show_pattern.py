"""Show a known four-colour pattern in a Tk window at a given place on the X display, until killed.

Usage: python show_pattern.py X Y W H   (the window's top-left corner and size, in screen pixels)
"""

import sys
import tkinter as tk

COLOURS = ["#ff0000", "#00ff00", "#0000ff", "#ffffff"]  # top-left, top-right, bottom-left, bottom-right

x, y, w, h = (int(v) for v in sys.argv[1:5])
root = tk.Tk()
root.overrideredirect(True)
root.geometry(f"{w}x{h}+{x}+{y}")
canvas = tk.Canvas(root, width=w, height=h, highlightthickness=0, borderwidth=0)
canvas.pack()
for i, colour in enumerate(COLOURS):
    cx, cy = (i % 2) * w // 2, (i // 2) * h // 2
    canvas.create_rectangle(cx, cy, cx + w // 2, cy + h // 2, fill=colour, outline=colour)
root.update()
print("shown", flush=True)
root.mainloop()
