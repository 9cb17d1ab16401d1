"""A screenshot of the web view while the shipped agent plays Pong in real time: docs/img/web_view.png.

Needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver) and selenium.
Usage: python docs/recipes/web_screenshot.py [OUT.png]
"""

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ROOT = Path(__file__).resolve().parents[2]
out = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs" / "img" / "web_view.png")
port = 8795
game = subprocess.Popen([sys.executable, "run.py", "play", "--mode", "realtime", "--sink", f"web:{port}", "--seed", "1000",
                         "play.video=", "predict.print_every=0"], cwd=ROOT)
try:
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=1)
            break
        except OSError:
            time.sleep(0.3)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,1040"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.get(f"http://127.0.0.1:{port}/")
    time.sleep(40)  # some play: the strips and sparklines fill
    driver.save_screenshot(str(out))
    driver.quit()
    print(out)
finally:
    game.terminate()
    game.wait(30)
