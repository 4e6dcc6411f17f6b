"""One rank of a two-process DistributedDataParallel job on 127.0.0.1 (gloo): trains a small
CNN for a few steps, logging activations every step into argv[1] (only rank 0 may write),
then prints `RESULT <json>` with what log_activations returned at each step."""

import json
import sys

import torch
from torch import nn

import tb_activations.torch as tbat


def main(log_dir):
    torch.distributed.init_process_group("gloo")
    rank = torch.distributed.get_rank()
    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
        nn.Linear(4 * 6 * 6, 3)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = torch.ones(2, 1, 6, 6)
    generator = torch.Generator().manual_seed(rank)
    returned = []
    for step in range(3):
        x = torch.randn(4, 1, 6, 6, generator=generator)
        loss = model(x).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        returned.append(tbat.log_activations(model, probe, step=step, log_dir=log_dir))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    print("RESULT " + json.dumps({"rank": rank, "returned": returned}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
