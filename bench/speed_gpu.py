"""Speed benchmark on one GPU (not a test): full-size SVD-XT with random weights, the ways of rendering it side by side.

The checkpoint: SVD-XT's real component configs with random weights (the arithmetic, and so the
time, of the real one), saved with ``save_pretrained`` (fp32 and the fp16 variant, as the hub
repo) and loaded through videosweep's real path: a manifest row naming the folder, the registry,
``render_job``. Variants (``--variants``, run in the order given):

  docs           diffusers docs recipe by hand: enable_model_cpu_offload, one call per video
  bare           by hand, whole pipeline on the GPU, eager                 (orchestration tax: eager / bare)
  eager          render_job, no options
  batch2         by hand, two images per call
  batch2-render  render_job path, --batch 2: two rows per call (render_shard, as a run renders them)
  channels_last  render_job, channels_last: true
  cudnn          render_job, cudnn_benchmark: true
  compile-unet   render_job, compile: {unet: MODE}
  compile-all    render_job, compile: {unet: MODE, vae: MODE}, channels_last, cudnn_benchmark
  compile-rerun  compile-all's first call in a second process: the persistent compile cache's warm-up
  Quality trades (opt-in per row; PSNR/SSIM against eager say how far they move the pixels):
  cutoff-0.6     render_job, guidance_cutoff: 0.6 (guidance's batch halved for the last 40% of steps)
  deep-cache-3   render_job, step_cache: {type: deep_cache, interval: 3} (the UNet's deep blocks every 3rd step)
  fastest        compile-all + deep_cache 3 + guidance_cutoff 0.6

Each variant: a first call (warm-up; compile where compiled), then --repeats timed calls with the
device synchronised; peak memory reset per variant; s/video (median after the first call), peak
GiB, ratio to the docs recipe, PSNR/SSIM of the first seed's frames against ``eager``. A table at
the end; JSON rewritten after every variant to $OUT/results.json (or --json).

    python bench/speed_gpu.py                 # on the GPU machine (see README "Speed")
    python bench/speed_gpu.py --tiny          # the same code paths on this CPU, tiny configs, < 2 min
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# the figures that matter first: a run cut off by --deadline-s keeps them
ALL = [
    "eager",
    "bare",
    "docs",
    "deep-cache-3",
    "cutoff-0.6",
    "compile-all",
    "compile-rerun",
    "fastest",
    "batch2-render",
    "batch2",
    "channels_last",
    "cudnn",
    "compile-unet",
]
TINY_SKIPS = {"compile-unet", "compile-all", "compile-rerun", "fastest"}  # a CPU compile takes minutes: --variants names them to force
COLUMNS = ["variant", "way", "s_per_video", "x_docs", "peak_gib", "first_call_s", "load_s", "psnr_db", "ssim", "note"]

#: stabilityai/stable-video-diffusion-img2vid-xt, unet/config.json (the values that differ from the class defaults too).
XT_UNET = {
    "sample_size": 96,
    "in_channels": 8,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlockSpatioTemporal"] * 3 + ["DownBlockSpatioTemporal"],
    "up_block_types": ["UpBlockSpatioTemporal"] + ["CrossAttnUpBlockSpatioTemporal"] * 3,
    "block_out_channels": [320, 640, 1280, 1280],
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 768,
    "layers_per_block": 2,
    "cross_attention_dim": 1024,
    "transformer_layers_per_block": 1,
    "num_attention_heads": [5, 10, 20, 20],
    "num_frames": 25,
}
#: vae/config.json (AutoencoderKLTemporalDecoder's own defaults are a toy).
XT_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 768,
    "scaling_factor": 0.18215,
    "force_upcast": True,
}
#: image_encoder/config.json: the OpenCLIP ViT-H/14 vision tower with its projection.
XT_IMAGE_ENCODER = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "projection_dim": 1024,
    "num_hidden_layers": 32,
    "num_attention_heads": 16,
    "image_size": 224,
    "patch_size": 14,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
}


def build_full_size(path: Path, device: str) -> None:
    """SVD-XT from its configs with random weights, saved as the hub repo is (fp32 and the fp16 variant)."""
    import torch
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    from videosweep.tasks.models.svd import build_tiny

    with tempfile.TemporaryDirectory() as scratch:  # the release's scheduler config, as the tiny checkpoint has it
        build_tiny(Path(scratch))
        scheduler = StableVideoDiffusionPipeline.from_pretrained(scratch).scheduler
    torch.manual_seed(0)
    with torch.device(device):  # random init on the GPU: seconds, where the CPU takes minutes
        unet = UNetSpatioTemporalConditionModel(**XT_UNET)
        vae = AutoencoderKLTemporalDecoder(**XT_VAE)
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**XT_IMAGE_ENCODER))
    pipe = StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=image_encoder,
        unet=unet,
        scheduler=scheduler,
        feature_extractor=CLIPImageProcessor(crop_size=224, size=224),
    )
    pipe.to(torch.float16).save_pretrained(path, variant="fp16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny configs on the CPU, 64x64, 4 frames, 2 steps")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=None,
        help=f"some of {','.join(ALL)}, comma- or space-separated (default: all; --tiny: no compile)",
    )
    parser.add_argument("--repeats", type=int, default=1, help="timed calls after the first, per variant")
    parser.add_argument("--compile-mode", default="reduce-overhead", help="torch.compile mode of the compile variants")
    parser.add_argument("--deadline-s", type=float, default=None, help="start no variant after this many seconds")
    parser.add_argument("--checkpoint", type=Path, default=None, help="the saved checkpoint folder (built if missing)")
    parser.add_argument("--json", type=Path, default=None, help="JSON path (default: $OUT/results.json where OUT is set)")
    args = parser.parse_args()

    started = time.perf_counter()
    home = Path(os.environ.setdefault("VIDEOSWEEP_HOME", str(Path(tempfile.gettempdir()) / "videosweep-speed-home")))
    import torch

    import videosweep.flows  # noqa: F401  (quiet, offline defaults)
    from bench.speed_measure import (
        Geometry,
        bare_diffusers,
        fidelity,
        render_path,
        table,
        write_json,
    )
    from videosweep.tasks.provenance import environment, gpu_name
    from videosweep.tasks.pipeline_setup import compile_cache_dir

    device = "cpu" if args.tiny else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --tiny on a CPU")
    if args.tiny:
        torch.set_num_threads(1)
    geometry = Geometry(64, 64, 4, 2, 2) if args.tiny else Geometry(576, 1024, 25, 25, 8)
    dtype = "float32" if args.tiny else "float16"
    names = [name for given in args.variants for name in given.split(",")] if args.variants else [
        v for v in ALL if not (args.tiny and v in TINY_SKIPS)
    ]
    unknown = set(names) - set(ALL)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(ALL)}")
    json_path = args.json or (Path(os.environ["OUT"]) / "results.json" if os.environ.get("OUT") else None)
    results = {
        "script": "bench/speed_gpu.py",
        "argv": sys.argv[1:],
        "device": gpu_name(device) or "cpu",
        "geometry": vars(geometry),
        "dtype": dtype,
        "env": dict(environment()),
        "compile_cache": str(compile_cache_dir()),
        "variants": [],
    }

    checkpoint = args.checkpoint or home / ("speed-svd-xt-tiny" if args.tiny else "speed-svd-xt")
    if not (checkpoint / "model_index.json").is_file():
        began = time.perf_counter()
        if args.tiny:
            from videosweep.tasks.models.svd import build_tiny

            build_tiny(checkpoint)
        else:
            build_full_size(checkpoint, device)
        results["build_s"] = time.perf_counter() - began
        print(f"built {checkpoint} in {results['build_s']:.1f} s", flush=True)
    seeds = list(range(1 + args.repeats))
    folder = Path(tempfile.mkdtemp(prefix="videosweep-speed-gpu-"))
    compiled = {"unet": args.compile_mode, "vae": args.compile_mode}
    fast = {"compile": compiled, "channels_last": True, "cudnn_benchmark": True}
    trades = {"cutoff": {"guidance_cutoff": 0.6}, "deep_cache": {"step_cache": {"type": "deep_cache", "interval": 3}}}
    measured: dict = {}

    def variant(name: str):
        def run(options: dict):
            return render_path(name, checkpoint, geometry, seeds, device, folder / name, options)

        if name == "docs":
            return bare_diffusers(name, checkpoint, geometry, seeds, device, folder / name, dtype, offload=True)
        if name == "bare":
            return bare_diffusers(name, checkpoint, geometry, seeds, device, folder / name, dtype)
        if name == "batch2":
            return bare_diffusers(name, checkpoint, geometry, list(range(2 * len(seeds))), device, folder / name, dtype, batch=2)
        if name == "batch2-render":
            return render_path(name, checkpoint, geometry, list(range(2 * len(seeds))), device, folder / name, {}, batch=2)
        if name == "eager":
            return run({})
        if name == "channels_last":
            return run({"channels_last": True})
        if name == "cudnn":
            return run({"cudnn_benchmark": True})
        if name == "compile-unet":
            return run({"compile": {"unet": args.compile_mode}})
        if name == "compile-all":
            return run(fast)
        if name == "compile-rerun":
            return compile_rerun(checkpoint, geometry, device, folder / name, fast)
        if name == "cutoff-0.6":
            return run(trades["cutoff"])
        if name == "deep-cache-3":
            return run(trades["deep_cache"])
        if name == "fastest":
            return run({**fast, **trades["cutoff"], **trades["deep_cache"]})
        raise ValueError(f"no variant {name}")

    for name in names:
        if args.deadline_s is not None and time.perf_counter() - started > args.deadline_s:
            results["variants"].append({"variant": name, "note": f"skipped: past --deadline-s {args.deadline_s:.0f}"})
            continue
        print(f"=== {name}", flush=True)
        began = time.perf_counter()
        try:
            m = variant(name)
        except Exception as exc:  # noqa: BLE001 - one failed variant never ends the run
            m = f"error: {type(exc).__name__}: {str(exc)[:500]}"
        if isinstance(m, str):
            results["variants"].append({"variant": name, "note": m})
        else:
            measured[name] = m
            results["variants"].append({"variant": name, **m.summary(), "note": m.note})
        results["variants"][-1]["wall_s"] = time.perf_counter() - began
        print(f"    {results['variants'][-1]}", flush=True)
        write_json(json_path, finish(results, measured, fidelity))

    final = finish(results, measured, fidelity)
    write_json(json_path, final)
    print()
    print(f"SVD-XT {'tiny, CPU' if args.tiny else 'full size, random weights'} | {results['device']} | {dtype} | {geometry.row()}")
    print(table(final["variants"], COLUMNS))
    if "tax" in final:
        print(f"orchestration tax, render_job eager against bare diffusers eager: {100 * final['tax']:+.1f}% per video")
    print(f"total {time.perf_counter() - started:.0f} s; JSON: {json_path or '(none: --json or $OUT)'}")


def finish(results: dict, measured: dict, fidelity) -> dict:
    """Ratios to the docs recipe, fidelity to eager, and the orchestration tax, from what was measured so far."""
    docs, eager, bare = (measured.get(name) for name in ("docs", "eager", "bare"))
    for row in results["variants"]:
        m = measured.get(row["variant"])
        if m is None:
            continue
        row["x_docs"] = m.s_per_video / docs.s_per_video if docs else None
        row.update(fidelity(m.first_frames, eager.first_frames) if eager else {})
    if eager and bare:
        results["tax"] = eager.s_per_video / bare.s_per_video - 1
    return results


def compile_rerun(checkpoint: Path, geometry, device: str, folder: Path, options: dict):
    """compile-all again in a fresh process, which finds the compiled graphs in the compile cache on disk."""
    import json

    from bench.speed_measure import Measured

    code = (
        "import sys, json; from pathlib import Path; sys.path.insert(0, '.'); import flows;"
        "from bench.speed_measure import Geometry, render_path;"
        f"m = render_path('rerun', Path({str(checkpoint)!r}), Geometry(**json.loads({json.dumps(json.dumps(vars(geometry)))})),"
        f" [0, 1], {device!r}, Path({str(folder)!r}), json.loads({json.dumps(json.dumps(options))}));"
        "print('RESULT', json.dumps({'times_s': m.times_s, 'load_s': m.load_s, 'peak_gib': m.peak_gib}))"
    )
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(done.stderr[-1500:])
    found = json.loads(done.stdout.split("RESULT")[-1])
    process_s = time.perf_counter() - began
    note = f"a second process: first call {found['times_s'][0]:.1f} s with the compile cache; process {process_s:.0f} s"
    return Measured("compile-rerun", "render_job", options, found["times_s"], found["load_s"], 1, found["peak_gib"], note)


if __name__ == "__main__":
    main()
