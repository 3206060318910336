# The Triton kernels run on the CPU through Triton's interpreter. Triton reads this variable when a
# kernel is decorated, i.e. when scan_kernel is imported, so it must be set before any test module
# imports the project.
import os
import sys

os.environ.setdefault("TRITON_INTERPRET", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
