"""Label Studio labelling configurations, generated from the class list: one per campaign
(rectangles, one label per class, in class-list order) and one for reviewing alerts."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from comms.classes import ClassList

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
FROM_NAME, TO_NAME = "label", "image"
REVIEW_CHOICES = ("confirm", "false alarm", "other class")


def detection_config(classes: ClassList) -> str:
    labels = "\n".join(f'    <Label value={quoteattr(r.name)} background="{COLOURS[i % len(COLOURS)]}"/>'
                       for i, r in enumerate(classes.rules))
    return (f'<View>\n  <Image name="{TO_NAME}" value="$image" zoom="true" zoomControl="true"/>\n'
            f'  <RectangleLabels name="{FROM_NAME}" toName="{TO_NAME}" strokeWidth="2">\n{labels}\n'
            "  </RectangleLabels>\n</View>\n")


def review_config(classes: ClassList) -> str:
    """An alert's crop and its photo; the verdict, and the right class when it is another."""
    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in REVIEW_CHOICES)
    other = "\n".join(f"    <Choice value={quoteattr(r.name)}/>" for r in classes.rules)
    return ('<View>\n  <Header value="$title"/>\n  <Image name="crop" value="$crop"/>\n'
            f'  <Image name="{TO_NAME}" value="$image" zoom="true"/>\n'
            f'  <Choices name="verdict" toName="{TO_NAME}" choice="single" required="true">\n{choices}\n'
            "  </Choices>\n"
            f'  <Choices name="correct_class" toName="{TO_NAME}" choice="single">\n{other}\n  </Choices>\n</View>\n')
