"""Video frames and audio waveforms, input beside reconstruction (matplotlib)."""

import numpy as np


def plot_video_audio(inputs, reconstruction, max_examples=3, max_frames=4,
                     class_names=None, title=None):
    """A matplotlib Figure: per example, input and reconstructed frames and waveforms.

    Args:
        inputs, reconstruction: `{"image": [N, T, H, W, C] in [0, 1],
            "audio": [N, S, 1], "label": [N, K]}` (reconstruction labels are
            logits or probabilities; the title shows the argmax).
        max_examples, max_frames: how much to draw.
        class_names: optional names of the label classes.
        title: optional figure title.
    """
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    video, video_rec = np.asarray(inputs["image"]), np.asarray(reconstruction["image"])
    audio, audio_rec = np.asarray(inputs["audio"]), np.asarray(reconstruction["audio"])
    rows = min(max_examples, len(video))
    frames = min(max_frames, video.shape[1])
    fig = Figure(figsize=(1.6 * frames + 3.2, 3.2 * rows))
    axes = fig.subplots(2 * rows, frames + 1, squeeze=False,
                        gridspec_kw={"width_ratios": [1] * frames + [2.2]})

    def name(index):
        return class_names[index] if class_names else str(index)

    for i in range(rows):
        true_label = name(int(np.argmax(inputs["label"][i])))
        pred_label = name(int(np.argmax(reconstruction["label"][i])))
        for r, (clip, kind) in enumerate(((video, "input"), (video_rec, "reconstruction"))):
            for t in range(frames):
                ax = axes[2 * i + r, t]
                ax.imshow(np.clip(clip[i, t], 0, 1).squeeze())
                ax.set_xticks([])
                ax.set_yticks([])
                if t == 0:
                    label = true_label if r == 0 else pred_label
                    ax.set_ylabel(f"{kind}\n({label})", fontsize=7)
                if i == 0 and r == 0:
                    ax.set_title(f"frame {t}", fontsize=7)
        ax = axes[2 * i, frames]
        ax.plot(audio[i, :, 0], lw=0.8, label="input")
        ax.plot(audio_rec[i, :, 0], lw=0.8, label="reconstruction")
        ax.set_ylim(-1.1, 1.1)
        ax.tick_params(labelsize=6)
        if i == 0:
            ax.legend(fontsize=6, loc="upper right")
            ax.set_title("audio", fontsize=7)
        ax = axes[2 * i + 1, frames]
        ax.plot(audio[i, :, 0] - audio_rec[i, :, 0], lw=0.8, color="gray")
        ax.set_ylim(-1.1, 1.1)
        ax.set_title("audio error", fontsize=7)
        ax.tick_params(labelsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
