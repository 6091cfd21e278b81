import { router } from '../../trpc/init';
import { list } from './list';
import { create } from './create';
import { update } from './update';

export const usersRouter = router({ list, create, update });
