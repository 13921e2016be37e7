COPY orders TO '@CANARY@' -- case: f_copy
