"""What a learner touches in a notebook besides the model code.

* ``checks``    exercise feedback: one friendly sentence naming the mistake, then the details
* ``quiz``      predict-then-run questions (widgets in Jupyter, plain text elsewhere)
* ``plotting``  masks, attention maps, loss curves; one colour per family across the course
* ``colab``     the notebooks' generated setup cell, header and footer, and the "Open in Colab" links

These modules import from the core and from :mod:`course_lib.lessons`; nothing imports from here.
"""
