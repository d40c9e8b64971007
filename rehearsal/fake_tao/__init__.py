"""A fake TAO Toolkit for tests and local rehearsal: TAO 3.0's ``classification``, ``ngc``
and ``converter`` and TAO 5's ``classification_tf1`` in ``fake_tao/bin``, a dataset maker in
``make_dataset.py``.

Host-side only (it never runs in the container). ``releases.py`` says what it emulates of
each release; ``fake_tao.py`` and ``fake_tao5.py`` what they honour.
"""
