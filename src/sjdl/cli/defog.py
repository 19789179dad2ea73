"""``sjdl defog``: restore foggy images with FIRM or the dark channel prior."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import console, deploy_errors, fail, interrupted
from .progress import progress_bar


def defog_command(
    inputs: list[Path] = typer.Argument(..., help="Foggy images or folders."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for restored images."),
    checkpoint: Path | None = typer.Option(None, help="Model with FIRM (for --method firm)."),
    method: str = typer.Option(
        "firm", help="firm (the trained FIRM) or dcp (dark channel prior, He et al.)."
    ),
    reference: Path | None = typer.Option(
        None, help="Folder of clear images (same relative paths or names): report PSNR/SSIM."
    ),
    overwrite: bool = typer.Option(False, help="Replace restored images of an earlier run."),
    resume: bool = typer.Option(
        False,
        "--continue",
        help="Restore only the images an interrupted run into -o left undone (same method "
        "and checkpoint).",
    ),
):
    """Restore foggy images of any size with FIRM or the dark channel prior.

    A folder's images keep their relative paths under -o; unreadable images are skipped and
    reported; inputs are never overwritten."""
    from ..data.io import ImageReadError, read_image, save_image
    from ..evaluation import QualityMeter
    from ..retrieval import ReID, defog_dcp, folder_lock
    from ..retrieval.outputs import check_defog_continue, plan_defog_outputs, write_defog_record

    if method not in ("firm", "dcp"):
        fail(f"--method {method}: expected firm or dcp")
    if method == "firm" and checkpoint is None:
        fail("--method firm needs --checkpoint (or use --method dcp)")
    if resume and overwrite:
        fail("--continue keeps the restorations already in -o, --overwrite replaces them: pick one")
    if reference is not None and not reference.is_dir():
        what = "not a folder" if reference.exists() else "folder not found"
        fail(f"--reference {reference}: {what} (a folder of clear images named as the inputs)")
    skipped: list[str] = []
    skipped_refs: list[str] = []  # reference images that cannot be compared (why)
    unmatched: list[str] = []  # inputs without a reference image of their path or name
    plan, written = [], 0
    try:
        # planned before the model loads, so that a refusal (existing outputs) costs nothing;
        # planned again under the lock below, where another run may have written meanwhile
        plan = plan_defog_outputs(inputs, output, overwrite, resume)
        reid = ReID.from_checkpoint(checkpoint) if method == "firm" else None
        if reid is not None and not reid.has_firm:
            fail(f"{checkpoint}: the model has no FIRM (method=baseline)")
        record = {"method": method, "checkpoint": reid.fingerprint if reid else None}
        meter, before, worse = QualityMeter(), QualityMeter(), []
        # one writer per -o: two runs would replace each other's images, each saying "wrote"
        with folder_lock(output, "defog output"), progress_bar() as bar:
            if resume:
                check_defog_continue(output, record)
            plan = plan_defog_outputs(inputs, output, overwrite, resume)  # under the lock
            write_defog_record(output, record)
            task = bar.add_task(f"defogging ({method})", total=len(plan))
            for src, dst, rel in plan:
                bar.advance(task)
                try:
                    img = read_image(src)[None]
                except ImageReadError as e:
                    skipped.append(str(e))
                    continue
                out = reid.defog(img) if reid else defog_dcp(img)
                save_image(out[0], dst)
                written += 1
                clear = None
                ref = _reference(reference, rel)
                if reference is not None and ref is None:
                    unmatched.append(str(rel))
                elif ref is not None:
                    try:
                        clear = read_image(ref)[None]
                    except ImageReadError as e:
                        skipped_refs.append(str(e))
                    if clear is not None and clear.shape != img.shape:
                        (h, w), (hi, wi) = clear.shape[-2:], img.shape[-2:]
                        skipped_refs.append(f"{ref}: {w}x{h}, its foggy image is {wi}x{hi}")
                        clear = None
                if clear is not None:
                    meter.update(out, clear, img)
                    if meter.below[-1]:  # further from the reference than its input
                        worse.append(str(rel))
                    before.update(img, clear)
    except deploy_errors() as e:
        fail(str(e))
    except KeyboardInterrupt:
        interrupted(
            f"{written} of {len(plan)} restored image(s) written to {output}; the same "
            "command with --continue restores the rest"
        )
    done = len(plan) - len(skipped)
    if skipped:
        more = f" (and {len(skipped) - 3} more)" if len(skipped) > 3 else ""
        console.print(
            f"[yellow]skipped {len(skipped)} unreadable image(s): {'; '.join(skipped[:3])}{more}",
            highlight=False,
        )
    if skipped_refs:
        console.print(
            f"[yellow]{len(skipped_refs)} reference image(s) unreadable or of another size, "
            f"left out of PSNR/SSIM, e.g. {skipped_refs[0]}",
            highlight=False,
        )
    if unmatched:
        console.print(
            f"[yellow]{len(unmatched)} of {len(plan)} input(s) have no reference image of the "
            f"same relative path or name in {reference}, e.g. {unmatched[0]}",
            highlight=False,
        )
    if resume and not plan:
        console.print(f"nothing left to restore: every input has its image in {output}")
        return
    if not done:
        fail(f"none of the {len(plan)} image(s) could be read; nothing written")
    kept = " (the others were there from the interrupted run)" if resume else ""
    console.print(f"wrote {done} restored image(s) to {output}{kept}")
    if meter.psnr:
        a, b = before.result(), meter.result()
        console.print(
            f"against {reference} ({b['num_images']} images): foggy input PSNR "
            f"{a['PSNR']:.2f} dB / SSIM {a['SSIM']:.4f} -> restored PSNR "
            f"{b['PSNR']:.2f} dB / SSIM {b['SSIM']:.4f}"
        )
        if worse:  # a restoration further from the reference than its foggy input
            shown = ", ".join(worse[:3]) + (f" and {len(worse) - 3} more" if len(worse) > 3 else "")
            console.print(
                f"[yellow]{len(worse)} of {b['num_images']} restored image(s) are further from "
                f"the reference than their input: {shown}",
                highlight=False,
            )


def _reference(folder: Path | None, rel: Path) -> Path | None:
    """The clear image for ``rel``: same relative path, else same file name, else none."""
    if folder is None:
        return None
    for ref in (folder / rel, folder / rel.name):
        if ref.is_file():
            return ref
    return None


def register(app: typer.Typer) -> None:
    app.command("defog")(defog_command)
