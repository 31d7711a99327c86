"""Figures and images: a matplotlib figure as PNG and SVG, a numpy image, an image series."""

import matplotlib.pyplot as plt  # the runner sets MPLBACKEND=Agg: no display
import mlflow
import numpy as np

mlflow.set_experiment("figures")
with mlflow.start_run(run_name="plots"):
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [3, 1, 2])
    mlflow.log_figure(fig, "charts/line.png")
    mlflow.log_figure(fig, "charts/line.svg")
    plt.close(fig)
    image = (np.arange(48, dtype=np.uint8).reshape(4, 4, 3) * 5).astype(np.uint8)
    mlflow.log_image(image, "images/gradient.png")
    mlflow.log_metric("pixels", float(image.size))
