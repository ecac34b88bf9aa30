import numpy as np

from keras_unet.visualize import _LINE_COLOURS, plot_history


def _history(n=6):
    e = np.arange(n, dtype=float)
    return {"epoch": list(e), "loss": list(1 / (e + 1)), "val_loss": list(1.2 / (e + 1)),
            "val_pixel_error": list(0.2 - 0.01 * e), "val_iou": list(0.5 + 0.05 * e),
            "val_dice": list(0.6 + 0.04 * e), "val_ap50": [0.1, np.nan, np.nan, 0.3, np.nan, 0.5],
            "val_map": [0.05, np.nan, np.nan, 0.1, np.nan, 0.2],
            "val_merges": [40.0, np.nan, np.nan, 20.0, np.nan, 12.0]}


def test_counts_get_their_own_panel_and_every_series_its_own_colour():
    with_counts = plot_history(_history())
    without = plot_history({k: v for k, v in _history().items() if k != "val_merges"})
    # three panels (losses, 0-1 metrics, merges) against two: the merges panel adds width
    assert with_counts.shape[1] == without.shape[1] + 360
    assert with_counts.dtype == np.uint8 and with_counts.shape[2] == 3
    assert len(set(_LINE_COLOURS)) >= 7  # five validation metrics and two losses, all distinct


def test_a_long_legend_wraps_instead_of_running_off_the_panel():
    history = {"epoch": [0.0, 1.0], "loss": [1.0, 0.5],
               **{f"val_metric_with_a_long_name_{i}": [0.1 * i, 0.2 * i] for i in range(6)}}
    picture = plot_history(history)
    metrics_panel = picture[:, 520:]
    assert metrics_panel.shape[0] > 360  # taller by the extra legend rows
    # nothing drawn in the panel's rightmost 10 px column band above the plot area (no spill)
    assert (metrics_panel[:60, -10:] == 255).all()


def test_y_ticks_are_round_numbers_within_the_values():
    from keras_unet.visualize import _nice_ticks

    assert _nice_ticks(0.0406, 0.597).tolist() == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert str(_nice_ticks(-0.0175, 1.02)[0]) == "0.0"  # never -0
    assert _nice_ticks(0.65, 30.4).tolist() == [10.0, 20.0, 30.0]
    assert _nice_ticks(-0.0175, 1.02).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert _nice_ticks(3.0, 5.0).tolist() == [3.0, 3.5, 4.0, 4.5, 5.0]
