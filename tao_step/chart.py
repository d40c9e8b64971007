"""Training curves drawn as one self-contained SVG with the standard library.

The TAO image has no plotting library, and the KFP UI shows a ``web-app`` output as HTML
in a sandboxed iframe, so the picture is an inline SVG: two small line charts (loss and
accuracy), each with train and validation lines, axes, ticks and a legend. Validation is
dashed as well as coloured so the lines stay distinguishable without colour. Hovering a
point shows its value.
"""

import math
from typing import List, Optional, Sequence, Tuple
from xml.sax.saxutils import escape

from tao_step.training_log import TrainingCurve

TRAIN_COLOUR = "#1f77b4"
VALIDATION_COLOUR = "#e8710a"
CHART_WIDTH, CHART_HEIGHT = 440, 300
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 60, 18, 52, 46
MARGIN_TOP_WITHOUT_LEGEND = 28
MAX_MARKED_POINTS = 40  # above this, markers would hide the line

Line = Tuple[str, Sequence[Optional[float]], str, str]  # label, values, colour, dash pattern


def nice_step(span: float, count: int) -> float:
    """A 1, 2, 2.5 or 5 times a power of ten close to ``span / count``."""
    raw = span / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 2.5, 5, 10):
        if raw <= multiple * magnitude * (1 + 1e-9):
            return multiple * magnitude
    return 10 * magnitude


def nice_ticks(low: float, high: float, count: int = 6) -> List[float]:
    """Round tick values covering [low, high], about ``count`` intervals."""
    if high < low:
        low, high = high, low
    if high == low:
        pad = abs(low) * 0.05 or 0.5
        low, high = low - pad, high + pad
    step = nice_step(high - low, count)
    start = math.floor(low / step + 1e-9) * step
    n = int(round((math.ceil(high / step - 1e-9) * step - start) / step))
    return [round(start + i * step, 12) for i in range(n + 1)]


def _decimals(step: float) -> int:
    decimals = 0
    while decimals < 8 and abs(step * 10 ** decimals - round(step * 10 ** decimals)) > 1e-6:
        decimals += 1
    return decimals


def tick_label(value: float, step: float, percent: bool = False) -> str:
    if percent:
        return "%.*f%%" % (_decimals(step * 100), value * 100)
    return "%.*f" % (_decimals(step), value)


def epoch_ticks(first: int, last: int) -> List[int]:
    if last <= first:
        return [first]
    step = max(1, int(math.ceil(nice_step(last - first, 6))))
    ticks = [e for e in range(first, last + 1) if e % step == 0]
    return ticks if len(ticks) >= 2 else [first, last]


def line_chart(x: float, y: float, title: str, epochs: Sequence[int], lines: Sequence[Line],
               percent: bool = False, height: int = CHART_HEIGHT, legend: bool = True) -> str:
    """One chart as an SVG group whose top-left corner is at (x, y); without ``legend`` the
    caller draws one for all its charts, and the plot starts closer to the title."""
    parts = ['<g transform="translate(%g,%g)">' % (x, y),
             '<text x="%g" y="18" class="title">%s</text>'
             % (MARGIN_LEFT, escape(title))]
    top = MARGIN_TOP if legend else MARGIN_TOP_WITHOUT_LEGEND
    plot_w = CHART_WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = height - top - MARGIN_BOTTOM
    values = [v for _, series, _, _ in lines for v in series if v is not None]
    if not values or not epochs:
        parts.append('<text x="%g" y="%g" class="empty">no values recorded</text></g>'
                     % (MARGIN_LEFT + plot_w / 2, top + plot_h / 2))
        return "".join(parts)

    y_ticks = nice_ticks(min(values), max(values))
    y_low, y_high = y_ticks[0], y_ticks[-1]
    x_low, x_high = min(epochs), max(epochs)
    if x_low == x_high:
        x_low, x_high = x_low - 0.5, x_high + 0.5

    def px(epoch: float) -> float:
        return MARGIN_LEFT + (epoch - x_low) / (x_high - x_low) * plot_w

    def py(value: float) -> float:
        return top + (y_high - value) / (y_high - y_low) * plot_h

    step = y_ticks[1] - y_ticks[0]
    for tick in y_ticks:
        parts.append('<line x1="%g" x2="%g" y1="%.1f" y2="%.1f" class="grid"/>'
                     % (MARGIN_LEFT, MARGIN_LEFT + plot_w, py(tick), py(tick)))
        parts.append('<text x="%g" y="%.1f" class="ytick">%s</text>'
                     % (MARGIN_LEFT - 6, py(tick) + 4, tick_label(tick, step, percent)))
    for tick in epoch_ticks(min(epochs), max(epochs)):
        parts.append('<line x1="%.1f" x2="%.1f" y1="%g" y2="%g" class="axis"/>'
                     % (px(tick), px(tick), top + plot_h, top + plot_h + 5))
        parts.append('<text x="%.1f" y="%g" class="xtick">%d</text>'
                     % (px(tick), top + plot_h + 18, tick))
    parts.append('<rect x="%g" y="%g" width="%g" height="%g" class="frame"/>'
                 % (MARGIN_LEFT, top, plot_w, plot_h))
    parts.append('<text x="%g" y="%g" class="xlabel">epoch</text>'
                 % (MARGIN_LEFT + plot_w / 2, height - 8))

    legend_x = MARGIN_LEFT
    for label, series, colour, dash in lines:
        if all(v is None for v in series):
            continue
        if legend:
            parts.append('<line x1="%g" x2="%g" y1="34" y2="34" stroke="%s" stroke-width="2.5"'
                         ' stroke-dasharray="%s"/>' % (legend_x, legend_x + 24, colour, dash))
            parts.append('<text x="%g" y="38" class="legend">%s</text>'
                         % (legend_x + 30, escape(label)))
            legend_x += 40 + 7 * len(label)
        segment = []  # type: List[str]
        segments = [segment]  # runs of consecutive values; a missing value breaks the line
        points = [(epoch, series[i]) for i, epoch in enumerate(epochs)]
        for epoch, value in points:
            if value is None:
                segment = []
                segments.append(segment)
            else:
                segment.append("%.1f,%.1f" % (px(epoch), py(value)))
        for run in segments:
            if len(run) > 1:
                parts.append('<polyline points="%s" fill="none" stroke="%s" stroke-width="2"'
                             ' stroke-dasharray="%s"/>' % (" ".join(run), colour, dash))
        marked = [(epoch, value) for epoch, value in points if value is not None]
        if len(marked) <= MAX_MARKED_POINTS:
            for epoch, value in marked:
                shown = "%.2f%%" % (value * 100) if percent else "%.4f" % value
                parts.append('<circle cx="%.1f" cy="%.1f" r="2.8" fill="%s"><title>epoch %d, '
                             '%s: %s</title></circle>'
                             % (px(epoch), py(value), colour, epoch, escape(label), shown))
    parts.append("</g>")
    return "".join(parts)


_STYLE = (
    "text{font-family:Roboto,Helvetica,Arial,sans-serif;fill:#202124}"
    ".title{font-size:14px;font-weight:bold}"
    ".legend,.xlabel{font-size:12px}"
    ".xlabel,.xtick,.empty{text-anchor:middle}"
    ".xtick,.ytick{font-size:11px;fill:#5f6368}.ytick{text-anchor:end}"
    ".grid{stroke:#e8eaed}.axis{stroke:#9aa0a6}"
    ".frame{fill:none;stroke:#9aa0a6}.empty{font-size:12px;fill:#5f6368}"
    ".caption{font-size:11px;fill:#5f6368}"
)


def training_curves_svg(curve: TrainingCurve, title: str) -> str:
    """Loss and accuracy side by side, train solid and validation dashed."""
    series = curve.series

    def lines(train: str, validation: str) -> List[Line]:
        return [("train", series.get(train, []), TRAIN_COLOUR, "none"),
                ("validation", series.get(validation, []), VALIDATION_COLOUR, "6 3")]

    width, height = 2 * CHART_WIDTH + 20, CHART_HEIGHT + 30
    return "".join([
        '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d"'
        ' role="img">' % (width, height, width, height),
        "<title>%s</title>" % escape(title),
        "<style>%s</style>" % _STYLE,
        '<rect width="100%" height="100%" fill="#ffffff"/>',
        '<text x="10" y="20" class="title">%s</text>' % escape(title),
        line_chart(0, 30, "Loss", curve.epochs, lines("loss", "val_loss")),
        line_chart(CHART_WIDTH + 20, 30, "Accuracy", curve.epochs, lines("acc", "val_acc"),
                   percent=True),
        "</svg>",
    ])


def training_curves_html(curve: TrainingCurve, title: str, caption: str) -> str:
    """A complete HTML page around the SVG, for a KFP ``web-app`` output."""
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>%s</title></head>"
            "<body style=\"margin:0;font-family:Roboto,Helvetica,Arial,sans-serif\">%s"
            "<p style=\"font-size:12px;color:#5f6368;margin:4px 10px\">%s</p></body></html>"
            % (escape(title), training_curves_svg(curve, title), escape(caption)))


# The summary's picture: both models on the same axes, for the side panel's Visualizations,
# where each output is a PlotCard with maxDimension 500 (RunDetails.tsx, 1.8.5 to 2.17.0),
# which makes a web-app's frame 500 px high, a 1 px border included (HTMLViewer.tsx): the
# two charts one above the other, in 498 px, no wider than one chart.
MODEL_COLOURS = ("#1f77b4", "#d62728")
COMPARED_CHART_HEIGHT = 212
COMPARED_HEIGHT = 58 + 2 * COMPARED_CHART_HEIGHT + 16


def compared_curves_svg(curves: Sequence[Tuple[str, TrainingCurve]], title: str,
                        caption: str) -> str:
    """Loss, then accuracy, for each (model, curve): a colour per model, train solid and
    validation dashed. Epochs are matched by number; a model without a value at an epoch
    shows none there."""
    epochs = sorted(set(e for _, curve in curves for e in curve.epochs))

    def on_axis(curve: TrainingCurve, name: str) -> List[Optional[float]]:
        by_epoch = dict(zip(curve.epochs, curve.series.get(name, [])))
        return [by_epoch.get(e) for e in epochs]

    def lines(train: str, validation: str) -> List[Line]:
        found = []  # type: List[Line]
        for (model, curve), colour in zip(curves, MODEL_COLOURS):
            found.append((model + " train", on_axis(curve, train), colour, "none"))
            found.append((model + " validation", on_axis(curve, validation), colour, "6 3"))
        return found

    legend, x = [], 10
    for (model, _), colour in zip(curves, MODEL_COLOURS):
        legend.append('<line x1="%g" x2="%g" y1="34" y2="34" stroke="%s" stroke-width="4"/>'
                      '<text x="%g" y="38" class="legend">%s</text>'
                      % (x, x + 24, colour, x + 30, escape(model)))
        x += 44 + 7 * len(model)
    legend.append('<line x1="10" x2="34" y1="52" y2="52" stroke="#5f6368" stroke-width="2"/>'
                  '<text x="40" y="56" class="legend">train</text>'
                  '<line x1="90" x2="114" y1="52" y2="52" stroke="#5f6368" stroke-width="2"'
                  ' stroke-dasharray="6 3"/><text x="120" y="56" class="legend">validation'
                  '</text>')
    width, height = CHART_WIDTH, COMPARED_HEIGHT
    return "".join([
        '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d"'
        ' style="display:block;max-width:100%%;height:auto" role="img">'
        % (width, height, width, height),
        "<title>%s</title>" % escape(title),
        "<style>%s</style>" % _STYLE,
        '<rect width="100%" height="100%" fill="#ffffff"/>',
        '<text x="10" y="20" class="title">%s</text>' % escape(title),
        "".join(legend),
        line_chart(0, 58, "Loss", epochs, lines("loss", "val_loss"),
                   height=COMPARED_CHART_HEIGHT, legend=False),
        line_chart(0, 58 + COMPARED_CHART_HEIGHT, "Accuracy", epochs,
                   lines("acc", "val_acc"), percent=True, height=COMPARED_CHART_HEIGHT,
                   legend=False),
        '<text x="10" y="%d" class="caption">%s</text>' % (height - 4, escape(caption)),
        "</svg>",
    ])


def compared_curves_html(curves: Sequence[Tuple[str, TrainingCurve]], title: str,
                         caption: str) -> str:
    """A complete HTML page around :func:`compared_curves_svg`, for a ``web-app`` output."""
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>%s</title></head>"
            "<body style=\"margin:0\">%s</body></html>"
            % (escape(title), compared_curves_svg(curves, title, caption)))
