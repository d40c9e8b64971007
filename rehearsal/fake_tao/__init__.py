"""A fake TAO Toolkit 3.0 for tests and local rehearsal: ``classification``, ``ngc`` and
``converter`` in ``fake_tao/bin``, a dataset maker in ``make_dataset.py``.

Host-side only (it never runs in the container); see ``fake_tao.py`` for what it honours.
"""
