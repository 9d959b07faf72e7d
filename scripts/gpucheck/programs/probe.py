"""Prints, as one JSON line, the interpreter, torch and its GPU, and which of the modules named in
argv import (the GPU check's probe of the machine)."""

import importlib.util
import json
import platform
import sys

info: dict = {
    "python": platform.python_version(),
    "executable": sys.executable,
    "modules": {m: importlib.util.find_spec(m) is not None for m in sys.argv[1:]},
}
try:
    import torch
except ImportError as error:
    info["torch_error"] = str(error)
else:
    info.update(torch=torch.__version__, cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(
            gpu=p.name,
            gpus=torch.cuda.device_count(),
            capability=f"{p.major}.{p.minor}",
            sms=p.multi_processor_count,
            memory_gib=round(p.total_memory / 2**30, 1),
        )
print(json.dumps(info))
