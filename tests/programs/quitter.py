"""A child program that closes its output, then exits after a pause.

Usage: quitter.py DELAY. Its exit then wakes supervisord only by SIGCHLD: the EOF on
its output pipes was handled DELAY seconds earlier.
"""

import os
import sys
import time

devnull = os.open(os.devnull, os.O_WRONLY)
os.dup2(devnull, 1)  # closes the write ends of supervisord's pipes
os.dup2(devnull, 2)
time.sleep(float(sys.argv[1]))
