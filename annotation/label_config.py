"""Label Studio labelling configurations, generated from the class list: one per campaign
(rectangles, one label per class, in class-list order) and one for reviewing alerts."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from comms.classes import ClassList

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
FROM_NAME, TO_NAME = "label", "image"
REVIEW_CHOICES = ("confirm", "false alarm", "other class")


def detection_config(classes: ClassList) -> str:
    """Rectangles on the photo, one label per class of `classes` (the pre-annotating model's list,
    so every class it predicts can be kept or corrected); the task's title says what to look for
    (a missed-fault task says so: the model raised nothing there)."""
    labels = "\n".join(f'    <Label value={quoteattr(r.name)} background="{COLOURS[i % len(COLOURS)]}"/>'
                       for i, r in enumerate(classes.rules))
    return (f'<View>\n  <Header value="$title"/>\n'
            f'  <Image name="{TO_NAME}" value="$image" zoom="true" zoomControl="true"/>\n'
            f'  <RectangleLabels name="{FROM_NAME}" toName="{TO_NAME}" strokeWidth="2">\n{labels}\n'
            "  </RectangleLabels>\n</View>\n")


def review_config(classes: ClassList) -> str:
    """An alert's crop and its photo, both with the alert's box drawn by the cloud; two labelled
    questions: is it a real fault, and (shown only for "other class") which fault class it is.
    Only fault classes are offered: an insulator is not a fault, it is a false alarm."""
    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in REVIEW_CHOICES)
    other = "\n".join(f"    <Choice value={quoteattr(r.name)}/>" for r in classes.rules if r.fault)
    return ('<View>\n  <Header value="$title"/>\n'
            '  <View style="display: flex; gap: 1em; align-items: flex-start">\n'
            '    <Image name="crop" value="$crop" maxWidth="360px"/>\n'
            f'    <Image name="{TO_NAME}" value="$image" zoom="true" zoomControl="true" maxWidth="720px"/>\n'
            "  </View>\n"
            '  <Header value="Is the boxed object a real fault of the class named above?" size="5"/>\n'
            f'  <Choices name="verdict" toName="{TO_NAME}" choice="single" required="true" showInline="true">\n'
            f"{choices}\n  </Choices>\n"
            '  <View visibleWhen="choice-selected" whenTagName="verdict" whenChoiceValue="other class">\n'
            '    <Header value="Which fault is it?" size="5"/>\n'
            f'    <Choices name="correct_class" toName="{TO_NAME}" choice="single" showInline="true">\n{other}\n'
            "    </Choices>\n  </View>\n</View>\n")
