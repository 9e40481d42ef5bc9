with

orders as (

    select * from {{ ref('stg_core_orders') }}

),

final as (

    select
        cast(customer_id as integer) as customer_id,
        cast(sum(order_amount) as decimal(18, 2)) as lifetime_amount,
        cast(count(*) as integer) as order_count

    from orders

    group by customer_id

)

select * from final
