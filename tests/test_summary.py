"""`python -m dferjax.summary`: the parameter table and XLA's forward FLOPs against a hand count."""

from __future__ import annotations

import json
from pathlib import Path

from dferjax import summary

DFEW = str(Path(__file__).resolve().parents[1] / "configs" / "dfew.py")


def conv_macs(size: int, cin: int, cout: int, kernel: int, stride: int = 1) -> tuple[int, int]:
    """Multiply-adds of a square convolution with padding kernel // 2, counting only taps that fall
    inside the input (XLA does not count products with the zero padding), and the output size."""
    pad = kernel // 2
    out = (size + 2 * pad - kernel) // stride + 1
    taps = sum(1 for i in range(out) for t in range(kernel) if 0 <= i * stride - pad + t < size)
    return taps * taps * cin * cout, out


def paper_model_flops(frames: int = 16, image: int = 112) -> int:
    """Forward FLOPs (2 x MACs) of the convolutions and matrix products of the paper's model at
    output stride 16; the small rest (pooling, attention gates, GCN, norms) is left out."""
    macs, size = conv_macs(image, 3, 64, 7, 2)
    size = (size + 1) // 2                                    # 3x3 max pool, stride 2
    for cin, cout, stride in [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 1)]:
        m, out = conv_macs(size, cin, cout, 3, stride)
        macs += m + 3 * conv_macs(out, cout, cout, 3)[0]
        if stride != 1 or cin != cout:
            macs += conv_macs(size, cin, cout, 1, stride)[0]
        size = out
    macs *= frames
    tokens, dim, heads, dk, mlp = frames + 1, 512, 8, 64, 1024
    macs += 3 * (tokens * dim * 3 * heads * dk + tokens * heads * dk * dim + 2 * tokens * dim * mlp
                 + 2 * heads * tokens * tokens * dk)
    return 2 * macs


def test_summary_of_the_paper_model(capsys):
    assert summary.main(["--config", DFEW]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["params"] == 17_824_762 and isinstance(result["params"], int)
    assert result["params"] == sum(result["components"].values())
    # XLA counts the same products as the hand count, plus a little elementwise work.
    ratio = result["flops_per_sample"] / paper_model_flops()
    assert 1.0 <= ratio < 1.03, ratio
    assert any(line.startswith("backbone") and "11,176,512" in line for line in lines)


def test_summary_of_the_frame_mean_model_and_an_unknown_name(capsys):
    assert summary.main(["--config", DFEW, "--config.model.name=frame_mean"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # torchvision's resnet18 (11,689,512) without its 1000-way fc (513,000), and a 512 -> 7 classifier.
    assert result["model"] == "frame_mean" and result["params"] == 11_689_512 - 513_000 + 512 * 7 + 7
    try:
        summary.main(["--config", DFEW, "--config.model.name=nope"])
    except SystemExit as exit_:
        assert exit_.code == 2
    assert "known models: dfer, frame_mean" in capsys.readouterr().err
