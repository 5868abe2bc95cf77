"""How well a model's learned mask leaves out what covers a face: on sample A's frames where her hand is over
her face, the A->B swap's predicted mask (decoder B's: it never saw B's face covered, unless training put
occluders over it) inside the hand, against inside the rest of the face. A mask that knows occluders is low
on the hand and high elsewhere.

Usage: python bench/occlusion.py MODEL_DIR [MODEL_DIR ...]
Prints per model: hand frames, mean predicted mask on the hand, on the rest, and their ratio (lower is better).
"""
import sys

import numpy as np
from common import sample

from faceswap import align, masks, media
from faceswap.faces import make_finder
from faceswap.faces.hands import HandFinder
from faceswap.settings import ConvertSettings
from faceswap.swap.convert import Swapper


def predicted_on_hands(model_dir: str, every: int = 3) -> tuple[int, float, float]:
    swapper = Swapper(model_dir, ConvertSettings(occlusion="off", mask="predicted"))
    finder, hand_finder = make_finder("litert"), HandFinder()
    on_hand, elsewhere = [], []
    for frame in media.read_frames(sample("WolfgangLanger_Pexels.mp4")):
        faces = finder(frame.image)
        hands = hand_finder(frame.image, faces)
        if frame.index % every or not faces or not hands:
            continue
        job = swapper.prepare(frame.image, faces[0], hands)
        matrix = job.matrix
        _, predicted = swapper.infer(job.model_input[None])
        size, face = swapper.size, faces[0]
        hull = masks.hull_mask(align.transform_points(face.landmarks, matrix), (size, size)) > 0.5
        hand = masks.hand_mask([align.transform_points(h, matrix) for h in hands], (size, size)) > 0.5
        if (hand & hull).sum() > 20 and (hull & ~hand).sum() > 20:
            on_hand.append(float(predicted[0][hand & hull].mean()))
            elsewhere.append(float(predicted[0][hull & ~hand].mean()))
    return len(on_hand), float(np.mean(on_hand)), float(np.mean(elsewhere))


def main():
    for model_dir in sys.argv[1:]:
        frames, hand, rest = predicted_on_hands(model_dir)
        print(f"{model_dir}: {frames} hand frames, predicted mask on the hand {hand:.3f}, on the rest {rest:.3f}, "
              f"ratio {hand / rest:.3f}")


if __name__ == "__main__":
    main()
