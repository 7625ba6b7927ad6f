"""Train a GCR model with DistributedDataParallel.

    torchrun --nproc-per-node=2 docs/tutorials/train_ddp.py

Runs on GPUs with NCCL when they are available, else on CPU processes with gloo.
"""

import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from grassmann_cls import GrassmannHead, RiemannianSGD


def main() -> None:
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    rank, local_rank = dist.get_rank(), int(os.environ["LOCAL_RANK"])
    device = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)

    torch.manual_seed(0)  # DDP also copies rank 0's parameters to every rank
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), GrassmannHead(64, 10, subspace_dim=4)).to(device)
    model = DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)
    optimizer = RiemannianSGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)

    generator = torch.Generator().manual_seed(0)  # the same stand-in data set on every rank
    data = TensorDataset(torch.randn(2048, 32, generator=generator), torch.randint(0, 10, (2048,), generator=generator))
    sampler = DistributedSampler(data, shuffle=True, seed=0)  # each rank reads its own shard
    loader = DataLoader(data, batch_size=64, sampler=sampler)

    for epoch in range(3):
        sampler.set_epoch(epoch)
        for features, labels in loader:
            loss = nn.functional.cross_entropy(model(features.to(device)), labels.to(device))
            optimizer.zero_grad()
            loss.backward()  # DDP averages every gradient over the ranks, the bases' included
            optimizer.step()  # so every rank takes the same Riemannian step

    # The bases must still agree across ranks: compare with rank 0's copy.
    bases = model.module[-1].bases.detach()
    reference = bases.contiguous().clone()
    dist.broadcast(reference, src=0)
    drift = (bases - reference).abs().max()
    dist.all_reduce(drift, op=dist.ReduceOp.MAX)
    if rank == 0:
        print(f"final loss {loss.item():.4f}; largest difference of the bases across ranks {drift.item():.1e}")
        torch.save(model.module.state_dict(), "gcr_ddp.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
