"""The load side of concurbench, one package per stage: scenario -> run -> results -> charts,
with drivers/ running in processes of their own."""
