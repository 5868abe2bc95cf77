"""Run under torchrun by test_train: trains 2 steps with DDP and writes this rank's weight digest."""
import hashlib
import json
import sys
from pathlib import Path

import torch.distributed as dist

from faceswap.training.loop import TrainSettings, Trainer

a, b, model_dir = sys.argv[1:4]
trainer = Trainer(a, b, model_dir, TrainSettings(iterations=2, data_workers=0, precision="fp32", preview_every=1000),
                  progress=False)
trainer.run()
digest = hashlib.sha256()
for name, tensor in sorted(trainer.model.state_dict().items()):
    digest.update(name.encode())
    digest.update(tensor.detach().cpu().numpy().tobytes())
rank = dist.get_rank()
Path(model_dir).parent.joinpath(f"rank{rank}.json").write_text(json.dumps(
    {"step": trainer.step, "weights": digest.hexdigest(), "world": dist.get_world_size()}))
dist.barrier()
dist.destroy_process_group()
