/** `npm run bench`: the bench suite arrives with the bench issue. */
console.error('bench: no scenarios are implemented yet (see the bench issue)');
process.exit(2);
