"""LiteRT (the new name of TensorFlow Lite) files of an exported model, for Android and the Raspberry Pi.

    convert(wrapper, example, out_path, calibration=None) -> info   the float file, or (calibration: uint8
                                                                     N x C x C x 3 pictures) the int8 one
    run(path, pixels) -> (probabilities, novelty or None)            the file run by ai-edge-litert's interpreter

The converter is litert-torch (Google's maintained PyTorch -> LiteRT converter, formerly ai-edge-torch), never
a hand-written one. The int8 file is post-training quantized (PT2E, int8 weights and activations, per channel)
on the run's own training pictures, on this machine: nothing leaves it. The files take `wrapper`'s input
(uint8 pixels, one picture at a time) and give its outputs, so a phone only resizes (resize_rule.py).
"""
from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch
from torch import nn

CONVERTER, RUNTIME = "litert-torch", "ai-edge-litert"


def versions() -> dict:
    """The converter's and the runtime's versions; KeyError-free: a missing package is None."""
    found = {}
    for name in (CONVERTER, RUNTIME, "torch"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def convert(wrapper: nn.Module, example: torch.Tensor, out_path: str | Path,
            calibration: torch.Tensor | None = None) -> dict:
    """Write the LiteRT file of `wrapper` (traced with `example`, batch 1) and say what it is."""
    import litert_torch  # heavy (jax, the converter's MLIR): only when a LiteRT file is asked for

    t0 = time.time()
    module = _exportable(wrapper, example)
    options = {}
    if calibration is not None:
        module, options["quant_config"] = _quantized(module, calibration)
    litert_torch.convert(module, (example,), **options).export(str(out_path))
    return {"file": Path(out_path).name, "bytes": Path(out_path).stat().st_size,
            "seconds": round(time.time() - t0, 1), "quantized": "int8" if calibration is not None else None,
            "calibration_pictures": None if calibration is None else len(calibration), "versions": versions()}


def _exportable(wrapper: nn.Module, example: torch.Tensor) -> nn.Module:
    """The wrapper as a graph whose top-k (the novelty score's k-th nearest picture) is LiteRT's own TOPK_V2:
    by default it lowers to STABLEHLO_SORT, which ai-edge-litert 2.3's interpreter cannot run ("Didn't find
    op for builtin opcode 'STABLEHLO_SORT'"). The decomposition is litert-torch's own (torch_tfl)."""
    from litert_torch.backend.experimental import torch_tfl

    topk = torch.ops.aten.topk.default
    program = torch.export.export(wrapper.eval(), (example,))
    return program.run_decompositions({topk: torch_tfl.decomps[topk]}).module()


def _quantized(module: nn.Module, calibration: torch.Tensor):
    """Post-training int8 (weights per channel, activations per tensor) calibrated on `calibration`, one
    picture at a time (the file's batch). The novelty score reads int8 features, so its score moves more
    than the probabilities: the card gives by how much (litert-torch's quantizer cannot leave a module out)."""
    from litert_torch.quantize import pt2e_quantizer as pq
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import quantize_pt2e

    quantizer = pq.PT2EQuantizer().set_global(pq.get_symmetric_quantization_config(is_per_channel=True))
    prepared = quantize_pt2e.prepare_pt2e(module, quantizer)
    with torch.no_grad():
        for picture in calibration:
            prepared(picture[None])
    return quantize_pt2e.convert_pt2e(prepared, fold_quantize=False), QuantConfig(pt2e_quantizer=quantizer)


def run(path: str | Path, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The file's outputs for N x C x C x 3 uint8 pictures, as a phone's LiteRT runs it (one at a time)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    signature = interpreter.get_signature_list()["serving_default"]
    runner, name = interpreter.get_signature_runner(), signature["inputs"][0]
    outputs = [runner(**{name: picture[None]}) for picture in np.asarray(pixels, dtype=np.uint8)]
    # Outputs are named output_0, output_1... in the wrapper's order: probabilities, then novelty.
    keys = sorted(outputs[0]) if outputs else []
    probs = np.concatenate([o[keys[0]] for o in outputs]) if keys else np.zeros((0, 0), np.float32)
    novelty = np.concatenate([o[keys[1]] for o in outputs]) if len(keys) > 1 else None
    return probs, novelty
