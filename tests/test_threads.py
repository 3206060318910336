"""configurator.set_threads: the scripts' `threads` setting (0 = picked for the load, N = N)."""
import os
import subprocess
import sys
import time

import torch

from configurator import set_threads


def test_a_count_is_taken_as_is():
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_busy_core_is_left_to_its_job():
    # A process spinning beside this one holds a core: the pick leaves it that core (with one core,
    # or other work running too, it goes down to 1, never 0).
    cores = len(os.sched_getaffinity(0))
    before = torch.get_num_threads()
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        picked = set_threads(0)
    finally:
        spinner.kill()
        spinner.wait()
        torch.set_num_threads(before)
    assert 1 <= picked <= max(1, cores - 1)
