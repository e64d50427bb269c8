"""The quantizer process: `python -m roost.models.quantize_main --input SRC --output DST ...`.

Runs llama.cpp's `llama_model_quantize` once and tells the server what it does on stdout, one
JSON object a line: `{"tensor": NAME}` as each tensor starts (read from llama.cpp's own log
line "[  12/ 290] blk.0.attn_q.weight - ..."), `{"error": TEXT}` for each error it logs. The
exit code is 0 only when the output file is complete. It is a process of its own because the
quantizer can abort on a bad input and holds a core for minutes: the server kills it when the
client goes away, and the kernel kills it when the server dies.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import signal
import sys

import llama_cpp.llama_cpp as ll

PR_SET_PDEATHSIG = 1  # linux/prctl.h
_LEVEL_INFO, _LEVEL_ERROR = 2, 4
_TENSOR = re.compile(r"^\[\s*\d+/\s*\d+\]\s+(\S+)")


def _emit(event: dict[str, str]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _log(level: int, text: bytes, _data: ctypes.c_void_p) -> None:
    line = (text or b"").decode("utf-8", errors="replace")
    if level == _LEVEL_INFO and (match := _TENSOR.match(line)):
        _emit({"tensor": match.group(1)})
    elif level == _LEVEL_ERROR and line.strip():
        _emit({"error": line.strip()})


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="roost-quantize")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--ftype", type=int, required=True, help="llama.cpp's llama_ftype")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--allow-requantize", action="store_true")
    p.add_argument("--parent-pid", type=int, default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when this stops
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if args.parent_pid is not None and os.getppid() != args.parent_pid:
        return 1  # the server died before the line above took effect
    ll.llama_backend_init()
    ll.llama_log_set(_log, ctypes.c_void_p(0))
    params = ll.llama_model_quantize_default_params()
    params.ftype = args.ftype
    params.nthread = args.threads
    params.allow_requantize = args.allow_requantize
    code = ll.llama_model_quantize(args.input.encode(), args.output.encode(), ctypes.byref(params))
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
