"""Bright Smile Dental's tools for its Switchboard receptionist (an example package).

The tools are declared as ``switchboard.tools`` entry points in pyproject.toml:

- ``check_appointment_slots`` (:mod:`.slots`): free appointment times on a day;
- ``request_callback`` (:mod:`.callbacks`): a request for a colleague to call back.
"""
