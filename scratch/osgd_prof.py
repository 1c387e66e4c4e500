"""Throwaway: where an OSGD step's time goes beyond its bare passes."""
import statistics
import sys
import time

import torch

sys.path.insert(0, "bench")
from step_costs import make_case, runtime_for  # noqa: E402

import nestdsl  # noqa: E402

spec = sys.argv[1] if len(sys.argv) > 1 else "specs/resnet42_width.nest"
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 128
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
runtime = runtime_for(device)
torch.manual_seed(0)
net = nestdsl.compile(nestdsl.load(spec)).train().to(device)
if runtime.channels_last:
    net.to(memory_format=torch.channels_last)
x = torch.randn(batch, *net.input_shape, device=device)
if runtime.channels_last:
    x = x.contiguous(memory_format=torch.channels_last)
y = torch.randint(0, net.num_classes, (batch,), device=device)
sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
for strategy in ("sgd", "osgd"):
    case = make_case(net, strategy, "joint", x, y, runtime)
    for fn_name in ("step", "bare"):
        fn = getattr(case, fn_name)
        for _ in range(3):
            fn()
        sync()
        walls, hosts = [], []
        for _ in range(10):
            t0 = time.perf_counter()
            fn()
            t1 = time.perf_counter()
            sync()
            t2 = time.perf_counter()
            walls.append(t2 - t0)
            hosts.append(t1 - t0)
        acts = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            acts.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=acts) as prof:
            for _ in range(3):
                fn()
            sync()
        events = prof.key_averages()
        busy = sum(e.self_device_time_total for e in events) / 3 / 1e3
        print(
            f"{strategy} {fn_name}: wall {statistics.median(walls) * 1e3:.2f} ms, host "
            f"{statistics.median(hosts) * 1e3:.2f} ms, GPU busy {busy:.2f} ms"
        )
        if strategy == "osgd" and fn_name == "step":
            print(events.table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=60))
            if device.type == "cuda":
                print(events.table(sort_by="self_cuda_time_total", row_limit=15, max_name_column_width=60))
