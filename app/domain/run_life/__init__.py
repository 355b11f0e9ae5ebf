"""The run's whole life in one place.

- `transitions.py`: the states, the events and the one table (state, event) -> state;
- `statements.py`: every statement that changes a run's status, built from the table;
- `changes.py`: handing runs to machines (claim, offer), confirm, complete, withdraw,
  the sweeper's expiries, and runs whose group or machine goes away;
- `requests.py`: users' requests: start, cancel, re-prioritise.

Listing and looking runs up (`run_history`, `visible_run`) stay in app/domain/runs.py;
waiting for work, events and the agent channel are in app/queue/.
"""
